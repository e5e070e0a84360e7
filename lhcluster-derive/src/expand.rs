//! Expansion layer: the trait implementations, from a validated plan.
//!
//! Generated code names nothing but `<crate>::__private::…` (by default
//! `::lhcluster::__private`), so it compiles under `#![no_implicit_prelude]`
//! and whatever else is in scope.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::validate::{NotificationPlan, RequestPlan};

/// `impl Request for T`.
pub(crate) fn request(plan: &RequestPlan) -> TokenStream {
    let RequestPlan {
        ident,
        krate,
        name,
        id,
        response,
        one_way,
        id_field,
    } = plan;
    let private = quote!(#krate::__private);
    let id = match id {
        Some(id) => quote!(#id),
        None => quote!(#private::request_type_id(#name)),
    };
    let response = match response {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let request_id = id_field.as_ref().map(|field| {
        let member = &field.member;
        // Spanned at the field's type: a type that cannot be an id is
        // reported there.
        let value = quote_spanned! {field.ty.span()=>
            #private::request_id_of(&self.#member)
        };
        quote! {
            #[inline]
            fn request_id(&self) -> #private::Option<#private::RequestId> {
                #private::Option::Some(#value)
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #private::Request for #ident {
            const REQUEST_TYPE: #private::RequestType = #id;
            const NAME: &'static str = #name;
            const ONE_WAY: bool = #one_way;
            type Response = #response;
            #request_id
        }
    }
}

/// `impl Notification for T`.
pub(crate) fn notification(plan: &NotificationPlan) -> TokenStream {
    let NotificationPlan { ident, krate, name } = plan;
    quote! {
        #[automatically_derived]
        impl #krate::__private::Notification for #ident {
            const TOPIC: &'static str = #name;
        }
    }
}
