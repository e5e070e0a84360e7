//! Attribute layer: reads `#[request_type(...)]`, `#[request_id]` and
//! `#[notification(...)]` into raw values that keep their spans.
//!
//! Syntax is checked here (unknown keys, duplicates, values of the wrong
//! kind); what the values mean is checked by `validate`. Parsing goes on
//! after an error so that every mistake is reported in one compilation.

use proc_macro2::TokenTree;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Attribute, Expr, ExprLit, Lit, LitInt, LitStr, Meta, Path, Token, Type};

use crate::errors::Errors;

/// `#[request_type(...)]` on a request type.
pub(crate) const REQUEST_TYPE: &str = "request_type";
/// `#[request_id]` on the field that holds a request's natural id.
pub(crate) const REQUEST_ID: &str = "request_id";
/// `#[notification(...)]` on a notification type.
pub(crate) const NOTIFICATION: &str = "notification";

/// `name = "..."`: the request type's or notification's name.
pub(crate) const NAME: &str = "name";
/// `id = N`: an explicit request type id.
pub(crate) const ID: &str = "id";
/// `response = T`: the response type.
pub(crate) const RESPONSE: &str = "response";
/// `one_way`: no response.
pub(crate) const ONE_WAY: &str = "one_way";
/// `crate = "path"`: where the `lhcluster` crate is.
pub(crate) const CRATE: &str = "crate";

/// The keys `#[request_type(...)]` accepts.
const REQUEST_TYPE_KEYS: &[&str] = &[NAME, ID, RESPONSE, ONE_WAY, CRATE];
/// The keys `#[notification(...)]` accepts.
const NOTIFICATION_KEYS: &[&str] = &[NAME, CRATE];

/// A value read from an attribute, with the key that introduced it (the
/// span of errors about the setting as a whole).
pub(crate) struct Attr<T> {
    pub(crate) key: Path,
    pub(crate) value: T,
}

/// What `#[request_type(...)]` attributes said (all optional).
#[derive(Default)]
pub(crate) struct RequestTypeAttrs {
    pub(crate) name: Option<Attr<LitStr>>,
    pub(crate) id: Option<Attr<LitInt>>,
    pub(crate) response: Option<Attr<Type>>,
    pub(crate) one_way: Option<Attr<()>>,
    pub(crate) krate: Option<Attr<Path>>,
}

/// What `#[notification(...)]` attributes said (all optional).
#[derive(Default)]
pub(crate) struct NotificationAttrs {
    pub(crate) name: Option<Attr<LitStr>>,
    pub(crate) krate: Option<Attr<Path>>,
}

/// Reads every `#[request_type(...)]` among `attrs` (several are merged; a
/// key given twice is an error).
pub(crate) fn request_type(attrs: &[Attribute], errors: &mut Errors) -> RequestTypeAttrs {
    let mut out = RequestTypeAttrs::default();
    read_items(
        attrs,
        REQUEST_TYPE,
        REQUEST_TYPE_KEYS,
        errors,
        |meta, errors| {
            if name_or_crate(meta, REQUEST_TYPE, &mut out.name, &mut out.krate, errors) {
                return true;
            }
            let key = meta.path.clone();
            if key.is_ident(ID) {
                if let Some(v) = int_value(meta, errors) {
                    set(&mut out.id, key, v, REQUEST_TYPE, errors);
                }
            } else if key.is_ident(RESPONSE) {
                if let Some(v) = type_value(meta, errors) {
                    set(&mut out.response, key, v, REQUEST_TYPE, errors);
                }
            } else if key.is_ident(ONE_WAY) {
                if flag(meta, REQUEST_TYPE, ONE_WAY, errors) {
                    set(&mut out.one_way, key, (), REQUEST_TYPE, errors);
                }
            } else {
                return false;
            }
            true
        },
    );
    out
}

/// Reads every `#[notification(...)]` among `attrs`.
pub(crate) fn notification(attrs: &[Attribute], errors: &mut Errors) -> NotificationAttrs {
    let mut out = NotificationAttrs::default();
    read_items(
        attrs,
        NOTIFICATION,
        NOTIFICATION_KEYS,
        errors,
        |meta, errors| name_or_crate(meta, NOTIFICATION, &mut out.name, &mut out.krate, errors),
    );
    out
}

/// Runs `each` on the items of every `#[attr_name(...)]` among `attrs`; an
/// item whose key `each` does not take (`false`) is reported as unknown,
/// with the accepted `keys`.
fn read_items(
    attrs: &[Attribute],
    attr_name: &str,
    keys: &[&str],
    errors: &mut Errors,
    mut each: impl FnMut(&ParseNestedMeta<'_>, &mut Errors) -> bool,
) {
    for attr in attrs.iter().filter(|a| a.path().is_ident(attr_name)) {
        parse_list(attr, attr_name, errors, |meta, errors| {
            if !each(meta, errors) {
                unknown_key(meta, attr_name, keys, errors);
            }
        });
    }
}

/// The keys every attribute takes: `name` (stored in `name`) and `crate`
/// (in `krate`); `false` for another key.
fn name_or_crate(
    meta: &ParseNestedMeta<'_>,
    attr_name: &str,
    name: &mut Option<Attr<LitStr>>,
    krate: &mut Option<Attr<Path>>,
    errors: &mut Errors,
) -> bool {
    let key = meta.path.clone();
    if key.is_ident(NAME) {
        if let Some(v) = string_value(meta, attr_name, NAME, errors) {
            set(name, key, v, attr_name, errors);
        }
    } else if key.is_ident(CRATE) {
        if let Some(v) = crate_value(meta, attr_name, errors) {
            set(krate, key, v, attr_name, errors);
        }
    } else {
        return false;
    }
    true
}

/// The `#[request_id]` marker among a field's attributes, if any. It takes
/// no arguments and may be given once.
pub(crate) fn request_id_marker<'a>(
    attrs: &'a [Attribute],
    errors: &mut Errors,
) -> Option<&'a Attribute> {
    let mut found: Option<&Attribute> = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident(REQUEST_ID)) {
        if !matches!(attr.meta, Meta::Path(_)) {
            errors.spanned(
                &attr.meta,
                format!("`#[{REQUEST_ID}]` takes no arguments: write `#[{REQUEST_ID}]`"),
            );
        }
        if found.is_some() {
            errors.spanned(attr, format!("duplicate `#[{REQUEST_ID}]` on this field"));
        } else {
            found = Some(attr);
        }
    }
    found
}

/// Reports our attributes named in `names` found where they do not belong
/// (`place`: "a field", "an enum variant", "the type").
pub(crate) fn misplaced(attrs: &[Attribute], names: &[&str], place: &str, errors: &mut Errors) {
    for attr in attrs {
        if let Some(name) = names.iter().find(|n| attr.path().is_ident(n)) {
            let hint = if *name == REQUEST_ID {
                "it marks the field that holds the request id"
            } else {
                "it goes on the type"
            };
            errors.spanned(
                attr,
                format!("`#[{name}]` is not allowed on {place}: {hint}"),
            );
        }
    }
}

/// Runs `each` on the items of `#[attr_name(...)]`; the list form is the
/// only one accepted.
fn parse_list(
    attr: &Attribute,
    attr_name: &str,
    errors: &mut Errors,
    mut each: impl FnMut(&ParseNestedMeta<'_>, &mut Errors),
) {
    if !matches!(attr.meta, Meta::List(_)) {
        errors.spanned(
            &attr.meta,
            format!("expected `#[{attr_name}(key = value, ...)]`"),
        );
        return;
    }
    let result = attr.parse_nested_meta(|meta| {
        each(&meta, errors);
        Ok(())
    });
    if let Err(e) = result {
        errors.push(e);
    }
}

/// Stores `value` in `slot`, or reports a duplicate key.
fn set<T>(slot: &mut Option<Attr<T>>, key: Path, value: T, attr_name: &str, errors: &mut Errors) {
    if slot.is_some() {
        let name = key.get_ident().map(ToString::to_string).unwrap_or_default();
        errors.spanned(
            &key,
            format!("duplicate `{name}` in `#[{attr_name}(...)]`: give it once"),
        );
    } else {
        *slot = Some(Attr { key, value });
    }
}

/// An unknown key: reported with the accepted ones, and its value skipped.
fn unknown_key(meta: &ParseNestedMeta<'_>, attr_name: &str, keys: &[&str], errors: &mut Errors) {
    let name = path_text(&meta.path);
    let expected = keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    errors.spanned(
        &meta.path,
        format!("unknown key `{name}` in `#[{attr_name}(...)]`; expected one of {expected}"),
    );
    skip_item(meta.input);
}

/// `key = <expression>`, or an error (and the item skipped).
fn expr_value(meta: &ParseNestedMeta<'_>, example: &str, errors: &mut Errors) -> Option<Expr> {
    let key = path_text(&meta.path);
    if !meta.input.peek(Token![=]) {
        errors.spanned(&meta.path, format!("`{key}` needs a value: `{example}`"));
        skip_item(meta.input);
        return None;
    }
    match meta.value().and_then(|v| v.parse::<Expr>()) {
        Ok(expr) => Some(expr),
        Err(e) => {
            errors.push(e);
            skip_item(meta.input);
            None
        }
    }
}

/// `key = "text"`.
fn string_value(
    meta: &ParseNestedMeta<'_>,
    attr_name: &str,
    key: &str,
    errors: &mut Errors,
) -> Option<LitStr> {
    let example = format!("{key} = \"...\"");
    let must_be = format!("`{key}` in `#[{attr_name}(...)]` must be a string literal");
    literal_value(meta, &example, &must_be, errors, |lit| match lit {
        Lit::Str(s) => Some(s.clone()),
        _ => None,
    })
}

/// `id = 123`.
fn int_value(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> Option<LitInt> {
    let example = format!("{ID} = 1234");
    let must_be = format!("`{ID}` must be an integer literal");
    literal_value(meta, &example, &must_be, errors, |lit| match lit {
        Lit::Int(i) => Some(i.clone()),
        _ => None,
    })
}

/// `key = <literal>`, the literal `pick` takes; any other value is an error
/// (`must_be`, then the `example`).
fn literal_value<T>(
    meta: &ParseNestedMeta<'_>,
    example: &str,
    must_be: &str,
    errors: &mut Errors,
    pick: impl FnOnce(&Lit) -> Option<T>,
) -> Option<T> {
    let value = expr_value(meta, example, errors)?;
    if let Expr::Lit(ExprLit { lit, .. }) = &value {
        if let Some(picked) = pick(lit) {
            return Some(picked);
        }
    }
    errors.spanned(value, format!("{must_be}: `{example}`"));
    None
}

/// `response = SomeType`.
fn type_value(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> Option<Type> {
    if !meta.input.peek(Token![=]) {
        errors.spanned(
            &meta.path,
            format!("`{RESPONSE}` needs a type: `{RESPONSE} = MyResponse`"),
        );
        skip_item(meta.input);
        return None;
    }
    match meta.value().and_then(|v| v.parse::<Type>()) {
        Ok(ty) => Some(ty),
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                format!("`{RESPONSE}` must be a type: `{RESPONSE} = MyResponse`"),
            ));
            skip_item(meta.input);
            None
        }
    }
}

/// `crate = "path::to::lhcluster"`.
fn crate_value(meta: &ParseNestedMeta<'_>, attr_name: &str, errors: &mut Errors) -> Option<Path> {
    let lit = string_value(meta, attr_name, CRATE, errors)?;
    match lit.parse::<Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.spanned(
                &lit,
                format!("`{CRATE}` must name a path to the lhcluster crate, like `{CRATE} = \"my_lhcluster\"`"),
            );
            None
        }
    }
}

/// A bare flag (`one_way`); a value is an error.
fn flag(meta: &ParseNestedMeta<'_>, attr_name: &str, key: &str, errors: &mut Errors) -> bool {
    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
        errors.spanned(
            &meta.path,
            format!("`{key}` takes no value: write `#[{attr_name}({key})]`"),
        );
        skip_item(meta.input);
        return false;
    }
    true
}

/// Skips the rest of one `key ...` item, up to (not including) the next
/// top-level comma.
fn skip_item(input: ParseStream<'_>) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                return Ok(((), rest));
            }
            rest = next;
        }
        Ok(((), rest))
    });
}

fn path_text(path: &Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}
