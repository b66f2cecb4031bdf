"""Enrich and filter orders, in Python: parse JSON, look the country up in a dictionary
from the config, keep a running total per customer, and route what cannot be enriched
to the side output `rejected`.

Input value:   {"order": "o-1", "customer": "c-7", "country": "DE", "amount": 25.0}
Output value:  the order plus "region", "country_name" and "customer_total".
Config:
  countries   a table: country code -> {name, region}
  min_amount  orders below it are dropped (default 0)
"""

import json

import eddy


class Enrich(eddy.Operator):
    def init(self, config):
        self.min_amount = config.float("min_amount", 0.0)
        try:
            # A table in the spec arrives as JSON text.
            self.countries = json.loads(config.get("countries", "{}"))
        except ValueError as e:
            raise eddy.Fatal(f"config `countries` is not JSON: {e}")
        if not isinstance(self.countries, dict):
            raise eddy.Fatal("config `countries` must be a JSON object of code -> {name, region}")

    def process(self, event, ctx):
        order = event.value_json()
        if not isinstance(order, dict) or "customer" not in order or "amount" not in order:
            raise eddy.BadInput("an order needs `customer` and `amount`")
        amount = float(order["amount"])
        if amount < self.min_amount:
            return
        country = self.countries.get(order.get("country"))
        if country is None:
            reason = f"unknown country {order.get('country')!r}"
            ctx.emit_to("rejected", eddy.Event(event.key, event.value).with_header("reason", reason))
            return

        totals = ctx.store("totals")
        customer = str(order["customer"])
        total = round((totals.get_json(customer) or 0) + amount, 2)
        totals.set_json(customer, total)

        order.update(country_name=country["name"], region=country["region"], customer_total=total)
        ctx.emit(eddy.Event(customer, json.dumps(order, sort_keys=True, separators=(",", ":"))))


Handler = eddy.export(Enrich)
