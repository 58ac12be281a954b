from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from orders.models import ActorKind, Customer, Order, OrderEvent, OrderEventKind


class Command(BaseCommand):
    help = (
        "Put the demo customers and orders back as shipped (e.g. after the cancel demo). "
        "Order history is kept: each order whose status changes gets an audit event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Only load the demo data when there are no customers yet.",
        )

    def handle(self, *args: Any, if_empty: bool, **options: Any) -> None:
        if if_empty and Customer.objects.exists():
            self.stdout.write("Customers exist already; demo data left as it is.")
            return
        with transaction.atomic():
            before = dict(Order.objects.values_list("id", "status"))
            # The fixtures carry no sign-in links; keep the ones customers already have.
            logins = dict(Customer.objects.filter(user__isnull=False).values_list("id", "user_id"))
            call_command("loaddata", "customers", "orders", verbosity=0)
            for customer_id, user_id in logins.items():
                Customer.objects.filter(pk=customer_id).update(user_id=user_id)
            changed = [
                order
                for order in Order.objects.filter(id__in=before)
                if before[order.id] != order.status
            ]
            OrderEvent.objects.bulk_create(
                OrderEvent(
                    order=order,
                    kind=OrderEventKind.STATUS_RESET,
                    actor_kind=ActorKind.SYSTEM,
                    detail={
                        "from_status": before[order.id],
                        "to_status": order.status,
                        "reason": "reset_demo_data",
                    },
                )
                for order in changed
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data loaded: {Customer.objects.count()} customers, "
                f"{Order.objects.count()} orders ({len(changed)} restored)."
            )
        )
