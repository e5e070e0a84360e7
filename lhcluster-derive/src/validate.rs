//! Validation layer: checks what a model means and turns it into a plan for
//! the expansion.
//!
//! Every check records its error and carries on with a safe default, so
//! that all mistakes are reported at once and the plan still describes an
//! implementation (a placeholder) that keeps the rest of the user's code
//! free of follow-on errors. `None` means no placeholder can be made (a
//! union or a generic type).

use proc_macro2::Span;
use syn::{Ident, LitStr, Path, Type};

use crate::attr::{Attr, ID, NAME, NOTIFICATION, ONE_WAY, REQUEST_ID, REQUEST_TYPE, RESPONSE};
use crate::errors::Errors;
use crate::model::{IdField, NotificationModel, RequestModel, Shape};

/// What to generate for `#[derive(Request)]`.
pub(crate) struct RequestPlan {
    pub(crate) ident: Ident,
    /// Path of the `lhcluster` crate.
    pub(crate) krate: Path,
    pub(crate) name: LitStr,
    /// Explicit id; `None`: the hash of the name.
    pub(crate) id: Option<u32>,
    pub(crate) response: Option<Type>,
    pub(crate) one_way: bool,
    pub(crate) id_field: Option<IdField>,
}

/// What to generate for `#[derive(Notification)]`.
pub(crate) struct NotificationPlan {
    pub(crate) ident: Ident,
    pub(crate) krate: Path,
    pub(crate) name: LitStr,
}

/// Checks a request model.
pub(crate) fn request(model: RequestModel, errors: &mut Errors) -> Option<RequestPlan> {
    let shape_ok = shape(&model.shape, &model.generics, "Request", errors);
    let attrs = model.attrs;

    let name = name_or_ident(attrs.name, &model.ident);
    if name.value().is_empty() {
        errors.spanned(&name, format!("`{NAME}` must not be empty"));
    }

    let id = attrs.id.and_then(|a| match a.value.base10_parse::<u32>() {
        Ok(0) => {
            errors.spanned(
                &a.value,
                format!("request type id 0 is reserved: choose another `{ID}`, or leave it out to hash the name"),
            );
            None
        }
        Ok(id) => Some(id),
        Err(_) => {
            errors.spanned(
                &a.value,
                format!("`{ID}` must be a 32-bit unsigned integer (1 to {})", u32::MAX),
            );
            None
        }
    });

    let one_way = attrs.one_way.is_some();
    if let (Some(_), Some(response)) = (&attrs.one_way, &attrs.response) {
        errors.spanned(
            &response.key,
            format!("a `{ONE_WAY}` request has no response: remove `{RESPONSE}` or `{ONE_WAY}`"),
        );
    }

    let mut id_fields = model.id_fields.into_iter();
    let mut id_field = id_fields.next();
    for extra in id_fields {
        let first = id_field.as_ref().map(IdField::describe).unwrap_or_default();
        errors.spanned(
            &extra.marker,
            format!(
                "a second `#[{REQUEST_ID}]` field: a request has one id, and {first} already is it"
            ),
        );
    }
    if let Some(field) = &id_field {
        if let Some(variant) = &field.variant {
            errors.spanned(
                &field.marker,
                format!(
                    "`#[{REQUEST_ID}]` is only supported on a struct field (here in variant `{variant}`): \
                     an enum has no single field to read the id from; implement `Request::request_id` by hand"
                ),
            );
            id_field = None;
        } else if let Some(reason) = bad_id_type(&field.ty) {
            errors.spanned(
                &field.ty,
                format!(
                    "`#[{REQUEST_ID}]` field must be `u64` or a `Copy` type that converts into `u64` \
                     (`u8`, `u16`, `u32`, or a newtype with `impl From<MyId> for u64`); {reason}"
                ),
            );
            id_field = None;
        }
    }

    if !shape_ok {
        return None;
    }
    Some(RequestPlan {
        ident: model.ident,
        krate: krate(attrs.krate.map(|a| a.value)),
        name,
        id,
        response: attrs.response.map(|a| a.value),
        one_way,
        id_field,
    })
}

/// Checks a notification model.
pub(crate) fn notification(
    model: NotificationModel,
    errors: &mut Errors,
) -> Option<NotificationPlan> {
    let shape_ok = shape(&model.shape, &model.generics, "Notification", errors);
    let attrs = model.attrs;
    let name = name_or_ident(attrs.name, &model.ident);
    let text = name.value();
    if text.is_empty() {
        errors.spanned(
            &name,
            format!("`{NAME}` in `#[{NOTIFICATION}(...)]` must not be empty: it is the topic"),
        );
    } else if text.contains('\0') {
        errors.spanned(
            &name,
            format!("`{NAME}` in `#[{NOTIFICATION}(...)]` must not contain a NUL character"),
        );
    }
    if !shape_ok {
        return None;
    }
    Some(NotificationPlan {
        ident: model.ident,
        krate: krate(attrs.krate.map(|a| a.value)),
        name,
    })
}

/// Refuses unions and generic types; `true` if the shape is supported.
fn shape(shape: &Shape, generics: &syn::Generics, derive: &str, errors: &mut Errors) -> bool {
    let mut ok = true;
    if let Shape::Union(token) = shape {
        errors.spanned(
            token,
            format!(
                "`#[derive({derive})]` does not support unions: use a struct or an enum (serde cannot derive unions either)"
            ),
        );
        ok = false;
    }
    if generics.type_params().next().is_some() || generics.const_params().next().is_some() {
        let attr = if derive == "Request" {
            REQUEST_TYPE
        } else {
            NOTIFICATION
        };
        errors.spanned(
            generics,
            format!(
                "`#[derive({derive})]` does not support generic types: every instantiation would share one \
                 `#[{attr}]` name and id; derive it on a concrete type (a struct wrapping `Foo<Bar>`)"
            ),
        );
        ok = false;
    } else if generics.lifetimes().next().is_some() {
        errors.spanned(
            generics,
            format!(
                "`#[derive({derive})]` does not support lifetime parameters: a typed value is decoded \
                 into an owned type (`DeserializeOwned`); use owned fields such as `String`"
            ),
        );
        ok = false;
    }
    if let Some(clause) = &generics.where_clause {
        if ok && !clause.predicates.is_empty() {
            errors.spanned(
                clause,
                format!("`#[derive({derive})]` does not support `where` clauses"),
            );
            ok = false;
        }
    }
    ok
}

/// The name: `name = "..."`, else the type's name.
fn name_or_ident(given: Option<Attr<LitStr>>, ident: &Ident) -> LitStr {
    given
        .map(|a| a.value)
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()))
}

/// The crate path: `crate = "..."`, else `::lhcluster`.
fn krate(given: Option<Path>) -> Path {
    given.unwrap_or_else(|| {
        let mut path: Path = Ident::new("lhcluster", Span::call_site()).into();
        path.leading_colon = Some(Default::default());
        path
    })
}

/// Why a `#[request_id]` field's type is certainly wrong, for the types a
/// glance can tell (the type system checks the rest). The error's span
/// shows the type, so the text names only what kind of type it is.
fn bad_id_type(ty: &Type) -> Option<String> {
    let reason = match ty {
        Type::Paren(inner) => return bad_id_type(&inner.elem),
        Type::Group(inner) => return bad_id_type(&inner.elem),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?.ident.to_string();
            let hint = match last.as_str() {
                "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => {
                    "a signed integer does not convert into `u64` losslessly: store the id as `u64`"
                }
                "usize" | "u128" => {
                    "it does not convert into `u64` losslessly: store the id as `u64`"
                }
                "f32" | "f64" => "a float is not an id",
                "bool" | "char" => "it is not an id",
                "String" | "str" | "Vec" | "Box" | "Rc" | "Arc" | "Cow" => {
                    "the id must be a number that is `Copy`: hash the text into a `u64` field, or use a newtype"
                }
                "Option" => {
                    "a request either has a natural id or not: leave `#[request_id]` off for assigned ids"
                }
                _ => return None,
            };
            format!("`{last}` is not: {hint}")
        }
        Type::Reference(_) => "a reference is not: use the value type".to_owned(),
        Type::Tuple(_) => "a tuple is not: combine its parts into one `u64`".to_owned(),
        Type::Array(_) | Type::Slice(_) => "an array is not".to_owned(),
        Type::Ptr(_) | Type::BareFn(_) => "a pointer is not".to_owned(),
        _ => return None,
    };
    Some(reason)
}
