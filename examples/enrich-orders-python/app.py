"""Orders ⋈ customers in Python, with exactly the output of examples/enrich-orders (Rust):
input `customers` is a table (a record's value is the customer's latest row, an empty
value deletes the customer), input `orders` a stream keyed by customer id; each order is
emitted as `{"order":<order>,"customer":<row or null>}` with the row its customer has
then. `config.join`: "inner" (default: orders of unknown customers are dropped) or
"left" (emitted with null)."""

import eddy
from eddy.join import TableJoin


class EnrichOrders(eddy.Operator):
    def init(self, config):
        self.customers = TableJoin("customers", config.string("join", "inner"))

    def process(self, event, ctx):
        source = event.input()
        if source == "customers":
            self.customers.update(ctx, event)
        elif source == "orders":
            found = self.customers.join(ctx, event)
            if found is not None:
                row = found.row if found.row is not None else b"null"
                value = b'{"order":' + event.value + b',"customer":' + row + b"}"
                ctx.emit(eddy.Event(event.key or b"", value))
        else:
            raise eddy.Fatal(f'records from input {source!r}: this operator joins "orders" and "customers"')


Handler = eddy.export(EnrichOrders)
