"""Customers, orders and their audit trail; knows nothing of the chat.

Reads used elsewhere go through ``orders.selectors``, writes (with their rules and audit rows)
through ``orders.services``.
"""
