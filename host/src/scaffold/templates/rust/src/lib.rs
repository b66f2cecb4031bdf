//! {{name}}: counts events per key and emits `(key, "<greeting> #<count>")`.

use eddy_guest::prelude::*;

#[derive(Default)]
pub struct Counter {
    greeting: String,
}

impl Operator for Counter {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        self.greeting = config.get("greeting").unwrap_or("hello").to_string();
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let Some(key) = event.key_str()? else {
            return Err(Error::bad_input("events need a key"));
        };
        let key = key.to_string();
        let n = ctx.store("counts")?.increment(key.as_bytes(), 1)?;
        ctx.emit(Event::new(key, format!("{} #{n}", self.greeting)));
        Ok(())
    }
}

eddy_guest::export!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_guest::testing::Harness;

    #[test]
    fn counts_per_key() {
        let mut h = Harness::new(Counter::default()).unwrap();
        h.process(Event::new("a", "x")).unwrap();
        let out = h.process(Event::new("a", "y")).unwrap();
        assert_eq!(out[0].event.value_str().unwrap(), "hello #2");
    }
}
