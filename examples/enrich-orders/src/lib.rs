//! Orders ⋈ customers: a stream–table join over two inputs of one pipeline.
//!
//! Input `customers` is a table: a record's value is the customer's latest row (JSON),
//! an empty value deletes the customer. Input `orders` is a stream keyed by customer
//! id: each order is emitted with the row its customer has at that moment,
//! `{"order":<the order>,"customer":<the row, or null>}`. With `join = "inner"` (the
//! default) orders of unknown customers are dropped; with `join = "left"` they are
//! emitted with `null`. Rows must be JSON for the output to be JSON; the operator does
//! not parse them.

use eddy_guest::join::{JoinKind, Lookup, TableJoin};
use eddy_guest::prelude::*;

pub struct EnrichOrders {
    customers: TableJoin,
}

impl Default for EnrichOrders {
    fn default() -> Self {
        EnrichOrders {
            customers: TableJoin::inner("customers"),
        }
    }
}

impl Operator for EnrichOrders {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        let kind = match config.string("join", "inner").as_str() {
            "inner" => JoinKind::Inner,
            "left" => JoinKind::Left,
            other => {
                return Err(Error::fatal(format!(
                    "config join = {other:?}: expected \"inner\" or \"left\""
                )));
            }
        };
        self.customers = TableJoin::new("customers", kind);
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        match event.input().as_deref() {
            Some("customers") => self.customers.update(ctx, &event),
            Some("orders") => {
                let Some(found) = self.customers.join(ctx, &event)? else {
                    return Ok(());
                };
                let customer = match &found {
                    Lookup::Found(row) => row.as_slice(),
                    Lookup::Missing => b"null".as_slice(),
                };
                let mut value = Vec::with_capacity(event.value.len() + customer.len() + 24);
                value.extend_from_slice(b"{\"order\":");
                value.extend_from_slice(&event.value);
                value.extend_from_slice(b",\"customer\":");
                value.extend_from_slice(customer);
                value.push(b'}');
                ctx.emit(Event::new(event.key.clone().unwrap_or_default(), value));
                Ok(())
            }
            other => Err(Error::fatal(format!(
                "records from input {other:?}: this operator joins the inputs \"orders\" and \"customers\""
            ))),
        }
    }
}

eddy_guest::export!(EnrichOrders);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_guest::testing::Harness;

    fn values(out: Vec<eddy_guest::testing::Output>) -> Vec<String> {
        out.into_iter()
            .map(|o| o.event.value_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn orders_take_the_row_their_customer_has_then() {
        let mut h = Harness::new(EnrichOrders::default()).unwrap();
        h.process_from("customers", Event::new("c1", r#"{"name":"Ada"}"#))
            .unwrap();
        let out = h
            .process_from("orders", Event::new("c1", r#"{"id":1}"#))
            .unwrap();
        assert_eq!(
            values(out),
            [r#"{"order":{"id":1},"customer":{"name":"Ada"}}"#]
        );
        h.process_from("customers", Event::new("c1", r#"{"name":"Ada L."}"#))
            .unwrap();
        let out = h
            .process_from("orders", Event::new("c1", r#"{"id":2}"#))
            .unwrap();
        assert_eq!(
            values(out),
            [r#"{"order":{"id":2},"customer":{"name":"Ada L."}}"#]
        );
        // A tombstone deletes the customer: an inner join drops the next order.
        h.process_from("customers", Event::new("c1", "")).unwrap();
        assert!(
            h.process_from("orders", Event::new("c1", r#"{"id":3}"#))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_left_join_keeps_orders_of_unknown_customers() {
        let mut h = Harness::with_config(EnrichOrders::default(), &[("join", "left")]).unwrap();
        let out = h
            .process_from("orders", Event::new("c9", r#"{"id":1}"#))
            .unwrap();
        assert_eq!(values(out), [r#"{"order":{"id":1},"customer":null}"#]);
        assert!(Harness::with_config(EnrichOrders::default(), &[("join", "outer")]).is_err());
    }
}
