"""The support chat: customers talk to the assistant, staff audit and take over conversations.

One Django app (label ``chat``: ``models.py``, ``migrations/``, ``urls.py``, ``routing.py``,
``admin.py``, ``management/``) in four packages by concern. Imports go one way only:
``engine`` ← ``tools`` ← ``live`` ← ``staff``, and all of them may use ``orders``.

- ``engine``: the model engine, plain Python (the tool loop, history rules, reply parsing, model
  clients, the tool registry, the prompt). No Django, no Channels; boto3 only in its Bedrock
  client.
- ``tools``: the assistant's tools, one registry entry each, bound to the signed-in customer.
- ``live``: the live chat: websockets, turns, storing conversations, the customer's handoff.
- ``staff``: the support team: admin, transcripts, dashboard, export, retention, feedback, the
  inbox and the agent's side of a handoff.

``tests/test_architecture.py`` checks these rules.
"""
