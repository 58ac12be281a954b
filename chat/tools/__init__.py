"""The assistant's tools, as entries of ``registry``: the tools every conversation offers.

One module per area (``orders``: the customer's account and orders; ``handoff``: asking for a
person), one ``chat.engine.registry.Tool`` class per tool. Tools may use Django; they read through
``orders.selectors`` and write through ``orders.services``, and act only for the customer in
their ``ToolContext``. Adding a tool is a new class here plus its tests; the system prompt's tool
list and the ``toolConfig`` come from this registry.
"""

from chat.engine.registry import ToolRegistry
from chat.tools.handoff import RequestHumanAgent
from chat.tools.orders import CancelOrder, GetCustomerOrders, GetOrderById, GetUser

registry = ToolRegistry(
    [GetUser(), GetOrderById(), GetCustomerOrders(), CancelOrder(), RequestHumanAgent()]
)
