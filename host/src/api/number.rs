//! Whole numbers in JSON bodies: `3`, and `3.0` too (JSON Schema's `integer` allows it,
//! and tools that only know floats write it), but never `3.5`, a negative number for an
//! unsigned field, or one out of the field's range.

use serde::{Deserialize, Deserializer};

/// An optional whole number that fits `T`.
pub fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Whole(u64),
        Real(f64),
    }
    let out_of_range = || {
        serde::de::Error::custom(format!(
            "expected a whole number from 0 to {}",
            T::try_from(u64::MAX).map_or_else(|_| max_of::<T>(), |_| u64::MAX)
        ))
    };
    let n = match Option::<Form>::deserialize(d)? {
        None => return Ok(None),
        Some(Form::Whole(n)) => n,
        Some(Form::Real(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => f as u64,
        Some(Form::Real(_)) => return Err(out_of_range()),
    };
    T::try_from(n).map(Some).map_err(|_| out_of_range())
}

/// The largest `u64` that fits `T` (found by halving: `T` is only known to convert).
fn max_of<T: TryFrom<u64>>() -> u64 {
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if T::try_from(mid).is_ok() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[serde(default, deserialize_with = "super::whole")]
        n: Option<u32>,
    }

    fn parse(text: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<Body>(text)
            .map(|b| b.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_large_whole_number_written_as_a_float_is_taken() {
        #[derive(serde::Deserialize, Debug)]
        struct Big {
            #[serde(default, deserialize_with = "super::whole")]
            n: Option<u64>,
        }
        let big = |t: &str| {
            serde_json::from_str::<Big>(t)
                .map(|b| b.n)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            big(r#"{"n": 2034166222566119.0}"#),
            Ok(Some(2034166222566119))
        );
        assert_eq!(
            big(r#"{"n": 2034166222566119}"#),
            Ok(Some(2034166222566119))
        );
    }

    #[test]
    fn whole_numbers_in_either_form_and_nothing_else() {
        assert_eq!(parse(r#"{"n": 3}"#), Ok(Some(3)));
        assert_eq!(parse(r#"{"n": 3.0}"#), Ok(Some(3)));
        assert_eq!(parse(r#"{"n": null}"#), Ok(None));
        assert_eq!(parse(r#"{}"#), Ok(None));
        assert!(
            parse(r#"{"n": 4294967296}"#)
                .unwrap_err()
                .contains("0 to 4294967295")
        );
        for bad in [
            r#"{"n": 3.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": "3"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
