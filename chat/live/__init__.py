"""The live chat: what happens while a customer talks to the assistant (Django and Channels).

What belongs here: the customer's websocket and its frames (``consumers``, ``frames``), whether
a socket's session and user still hold (``access``), keeping sockets open while the channel
layer is away and knowing which other sockets share a conversation (``livelink``), getting
turns off the event loop and events to every tab (``realtime``, ``emitter``, ``relay``,
``layer``), taking a message in (``intake``), running turns
(``turns``, ``confirmations``), what a turn logs and traces (``observe``), closing turns whose
process died (``leases``, ``recovery``, ``sweep``), storing and showing conversations
(``writes``, ``storage``, ``conversations``), what the model sees of them (``model_history``),
the sockets' short database calls (``dbcalls``), the customer's side of a handoff and the state
changes both sides share (``handoff``), usage limits (``limits``), the customer's pages
(``views``) and the engine's settings (``engine_config``).

It uses the engine and the default tools; the staff side builds on its public functions.
"""
