//! Unit tests of the pipeline, without a compiler run (the compile-fail
//! tests with the real messages are `tests/ui/`).

use syn::{DeriveInput, parse_quote};

use crate::errors::Errors;
use crate::{expand, model, validate};

fn request(input: DeriveInput) -> (Option<String>, Vec<String>) {
    let mut errors = Errors::default();
    let plan = validate::request(model::request(&input, &mut errors), &mut errors);
    let code = plan.as_ref().map(|p| expand::request(p).to_string());
    (code, messages(errors))
}

fn messages(errors: Errors) -> Vec<String> {
    // Each error is `::core::compile_error! { "message" }`.
    errors
        .into_compile_errors()
        .to_string()
        .split("compile_error !")
        .skip(1)
        .map(|s| s.trim().to_owned())
        .collect()
}

#[test]
fn defaults() {
    let (code, errors) = request(parse_quote! {
        struct Ping;
    });
    assert!(errors.is_empty(), "{errors:?}");
    let code = code.unwrap();
    assert!(
        code.contains(":: lhcluster :: __private :: request_type_id (\"Ping\")"),
        "{code}"
    );
    assert!(code.contains("type Response = ()"), "{code}");
    assert!(code.contains("const ONE_WAY : bool = false"), "{code}");
    assert!(!code.contains("fn request_id"), "{code}");
}

#[test]
fn every_option() {
    let (code, errors) = request(parse_quote! {
        #[request_type(name = "a.b", id = 7, crate = "my::lh")]
        #[request_type(response = Vec<u8>)]
        struct Full {
            #[request_id]
            id: u32,
        }
    });
    assert!(errors.is_empty(), "{errors:?}");
    let code = code.unwrap();
    assert!(
        code.contains("impl my :: lh :: __private :: Request for Full"),
        "{code}"
    );
    assert!(
        code.contains("const REQUEST_TYPE : my :: lh :: __private :: RequestType = 7u32"),
        "{code}"
    );
    assert!(
        code.contains("const NAME : & 'static str = \"a.b\""),
        "{code}"
    );
    assert!(code.contains("type Response = Vec < u8 >"), "{code}");
    assert!(code.contains("request_id_of (& self . id)"), "{code}");
}

#[test]
fn all_errors_at_once_with_a_placeholder() {
    let (code, errors) = request(parse_quote! {
        // An unknown key, a reserved id, one_way with a response, a bad id
        // type, and a second id field.
        #[request_type(nmae = "x", id = 0, one_way, response = u8)]
        struct Bad {
            #[request_id]
            a: String,
            #[request_id]
            b: u64,
        }
    });
    assert_eq!(errors.len(), 5, "{errors:#?}");
    // The placeholder still implements the trait, without the bad id.
    let code = code.expect("a placeholder");
    assert!(code.contains("Request for Bad"), "{code}");
    assert!(!code.contains("fn request_id"), "{code}");
}

#[test]
fn no_placeholder_for_generics_and_unions() {
    let (code, errors) = request(parse_quote! {
        struct G<T> { t: T }
    });
    assert!(code.is_none());
    assert_eq!(errors.len(), 1);
    let (code, errors) = request(parse_quote! {
        union U { a: u8 }
    });
    assert!(code.is_none());
    assert_eq!(errors.len(), 1);
}

#[test]
fn notification_topic() {
    let mut errors = Errors::default();
    let input: DeriveInput = parse_quote! {
        #[notification(name = "orders.created")]
        struct Created;
    };
    let plan = validate::notification(model::notification(&input, &mut errors), &mut errors);
    assert!(errors.is_empty());
    let code = expand::notification(&plan.unwrap()).to_string();
    assert!(
        code.contains("const TOPIC : & 'static str = \"orders.created\""),
        "{code}"
    );
}
