//! Whole numbers in JSON bodies: `3`, and `3.0` too (JSON Schema's `integer` allows it,
//! and tools that only know floats write it), but never `3.5`, a negative number for an
//! unsigned field, or one out of the field's range.

use serde::{Deserialize, Deserializer};

/// A number as JSON writes it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Form {
    Whole(u64),
    Real(f64),
}

impl Form {
    /// The whole number that fits `T`, or why not.
    fn whole<T: TryFrom<u64>, E: serde::de::Error>(self) -> Result<T, E> {
        let out_of_range = || {
            E::custom(format!(
                "expected a whole number from 0 to {}",
                T::try_from(u64::MAX).map_or_else(|_| max_of::<T>(), |_| u64::MAX)
            ))
        };
        let n = match self {
            Form::Whole(n) => n,
            Form::Real(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => f as u64,
            Form::Real(_) => return Err(out_of_range()),
        };
        T::try_from(n).map_err(|_| out_of_range())
    }
}

/// An optional whole number that fits `T`.
pub fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    Option::<Form>::deserialize(d)?.map(Form::whole).transpose()
}

/// An optional list of whole numbers that fit `T`.
pub fn whole_list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    Option::<Vec<Form>>::deserialize(d)?
        .map(|forms| forms.into_iter().map(Form::whole).collect())
        .transpose()
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
    fn a_list_of_whole_numbers_in_either_form() {
        #[derive(serde::Deserialize, Debug)]
        struct List {
            #[serde(default, deserialize_with = "super::whole_list")]
            p: Option<Vec<u32>>,
        }
        let list = |t: &str| {
            serde_json::from_str::<List>(t)
                .map(|b| b.p)
                .map_err(|e| e.to_string())
        };
        assert_eq!(list(r#"{"p": [0, 3.0]}"#), Ok(Some(vec![0, 3])));
        assert_eq!(list(r#"{}"#), Ok(None));
        assert_eq!(list(r#"{"p": []}"#), Ok(Some(vec![])));
        for bad in [
            r#"{"p": [1.5]}"#,
            r#"{"p": [-1]}"#,
            r#"{"p": [4294967296]}"#,
            r#"{"p": 3}"#,
        ] {
            assert!(list(bad).is_err(), "{bad}");
        }
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
