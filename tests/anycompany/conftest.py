from tests.anycompany.cognito_standin import cognito, keys  # noqa: F401 - shared fixtures
