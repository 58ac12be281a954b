"""The staff side: how the support team audits conversations and answers customers.

What belongs here: the admin (``admin``), transcripts (``transcript``), numbers and charts
(``metrics``, ``dashboard``, ``charts``), export and retention (``export``, ``retention``), the
customers' ratings (``feedback``), and the human handoff as agents see it: claiming, replying,
handing back, the inbox (``handoff``, ``views``, ``consumers``).

It builds on the live chat's public functions (never its private ones) and changes orders only
through ``orders.services``.
"""
