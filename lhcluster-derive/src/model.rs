//! Model layer: the derive input seen as a request or a notification type,
//! with its attributes read and its `#[request_id]` fields found.

use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, Member, Type};

use crate::attr::{self, NotificationAttrs, RequestTypeAttrs};
use crate::errors::Errors;

/// The kind of item the derive is on.
pub(crate) enum Shape {
    Struct,
    Enum,
    /// With the `union` keyword, for error spans.
    Union(syn::token::Union),
}

/// A field marked `#[request_id]`.
pub(crate) struct IdField {
    /// How generated code reaches it (`self.<member>`).
    pub(crate) member: Member,
    /// Its declared type.
    pub(crate) ty: Type,
    /// The marker, for error spans.
    pub(crate) marker: Attribute,
    /// The enum variant it is in, if any (not supported).
    pub(crate) variant: Option<Ident>,
}

impl IdField {
    /// How to name it in messages.
    pub(crate) fn describe(&self) -> String {
        match &self.member {
            Member::Named(ident) => format!("field `{ident}`"),
            Member::Unnamed(index) => format!("field {}", index.index),
        }
    }
}

/// A type deriving `Request`.
pub(crate) struct RequestModel {
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) shape: Shape,
    pub(crate) attrs: RequestTypeAttrs,
    /// Every field marked `#[request_id]`, in declaration order.
    pub(crate) id_fields: Vec<IdField>,
}

/// A type deriving `Notification`.
pub(crate) struct NotificationModel {
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) shape: Shape,
    pub(crate) attrs: NotificationAttrs,
}

/// Reads a `#[derive(Request)]` input.
pub(crate) fn request(input: &DeriveInput, errors: &mut Errors) -> RequestModel {
    let attrs = attr::request_type(&input.attrs, errors);
    attr::misplaced(&input.attrs, &[attr::REQUEST_ID], "the type", errors);
    let mut id_fields = Vec::new();
    let mut visit = |fields: &Fields, variant: Option<&Ident>, errors: &mut Errors| {
        for (index, field) in fields.iter().enumerate() {
            attr::misplaced(&field.attrs, &[attr::REQUEST_TYPE], "a field", errors);
            if let Some(marker) = attr::request_id_marker(&field.attrs, errors) {
                let member = match &field.ident {
                    Some(ident) => Member::Named(ident.clone()),
                    None => Member::Unnamed(index.into()),
                };
                id_fields.push(IdField {
                    member,
                    ty: field.ty.clone(),
                    marker: marker.clone(),
                    variant: variant.cloned(),
                });
            }
        }
    };
    let shape = match &input.data {
        Data::Struct(data) => {
            visit(&data.fields, None, errors);
            Shape::Struct
        }
        Data::Enum(data) => {
            for variant in &data.variants {
                attr::misplaced(
                    &variant.attrs,
                    &[attr::REQUEST_TYPE, attr::REQUEST_ID],
                    "an enum variant",
                    errors,
                );
                visit(&variant.fields, Some(&variant.ident), errors);
            }
            Shape::Enum
        }
        Data::Union(data) => Shape::Union(data.union_token),
    };
    RequestModel {
        ident: input.ident.clone(),
        generics: input.generics.clone(),
        shape,
        attrs,
        id_fields,
    }
}

/// Reads a `#[derive(Notification)]` input.
pub(crate) fn notification(input: &DeriveInput, errors: &mut Errors) -> NotificationModel {
    let attrs = attr::notification(&input.attrs, errors);
    let shape = match &input.data {
        Data::Struct(data) => {
            for field in &data.fields {
                attr::misplaced(&field.attrs, &[attr::NOTIFICATION], "a field", errors);
            }
            Shape::Struct
        }
        Data::Enum(data) => {
            for variant in &data.variants {
                attr::misplaced(
                    &variant.attrs,
                    &[attr::NOTIFICATION],
                    "an enum variant",
                    errors,
                );
                for field in &variant.fields {
                    attr::misplaced(&field.attrs, &[attr::NOTIFICATION], "a field", errors);
                }
            }
            Shape::Enum
        }
        Data::Union(data) => Shape::Union(data.union_token),
    };
    NotificationModel {
        ident: input.ident.clone(),
        generics: input.generics.clone(),
        shape,
        attrs,
    }
}
