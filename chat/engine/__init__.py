"""The model engine: one customer turn against a Converse-shaped model, in plain Python.

What belongs here: the tool loop (``loop``, ``stream``, ``toolcalls``), the rules of a valid
Converse history (``history``), what the customer sees of a reply (``replies``), the model
boundary and its errors (``client``), the tool registry (``registry``), the system prompt
(``prompt``), the Bedrock client (``bedrock``) and the offline demo model (``demo``).

No module here imports Django, Channels or asyncio, and only ``bedrock`` imports boto3/botocore;
settings come in as arguments (``chat.live.engine_config``). So the loop runs the same against
Bedrock, the demo model and a scripted test double, in milliseconds.
"""
