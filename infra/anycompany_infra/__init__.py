"""AWS infrastructure for AnyCompany Support, as a CDK v2 app."""
