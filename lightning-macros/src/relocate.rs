//! `#[derive(Relocate)]`: a layer struct relocates every field, so a field the trainer
//! could not move is a compile error at that field, not a device mismatch at the first
//! backward.

use proc_macro2::{TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::{spanned::Spanned, Data, DeriveInput, Ident, Index};

use crate::errors::Errors;

/// Whether `tokens` names one of `params` (the field's type depends on a type parameter).
fn mentions(tokens: TokenStream, params: &[Ident]) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => params.contains(&i),
        TokenTree::Group(g) => mentions(g.stream(), params),
        _ => false,
    })
}

/// `#[relocate(skip)]` on a field; any other `relocate` attribute is an error.
fn skipped(field: &syn::Field, errors: &mut Errors) -> bool {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("relocate")) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("unknown option; `#[relocate]` takes `skip` (for a field that holds no tensors)"))
            }
        });
        if let Err(e) = r {
            errors.add(e);
        }
    }
    skip
}

pub fn derive(input: DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let Data::Struct(data) = &input.data else {
        errors.push(
            input.ident.span(),
            "`#[derive(Relocate)]` works on structs: implement `Relocate` by hand for an enum",
        );
        return errors.to_compile_errors();
    };
    let params: Vec<Ident> = input.generics.type_params().map(|p| p.ident.clone()).collect();
    let mut generics = input.generics.clone();
    let mut calls = Vec::new();
    for (i, field) in data.fields.iter().enumerate() {
        if skipped(field, &mut errors) {
            continue;
        }
        let ty = &field.ty;
        if mentions(quote!(#ty), &params) {
            generics.make_where_clause().predicates.push(syn::parse_quote!(#ty: ::lightning::Relocate));
        }
        let access = match &field.ident {
            Some(name) => quote!(#name),
            None => {
                let index = Index::from(i);
                quote!(#index)
            }
        };
        // spanned at the type: a type that cannot relocate is reported at its field
        calls.push(quote_spanned!(ty.span()=> ::lightning::Relocate::relocate(&mut self.#access, to)?;));
    }
    let name = &input.ident;
    let (ig, tg, wc) = generics.split_for_impl();
    let errors = errors.to_compile_errors();
    quote! {
        impl #ig ::lightning::Relocate for #name #tg #wc {
            fn relocate(&mut self, to: &::lightning::Relocation) -> ::lightning::Result<()> {
                #(#calls)*
                ::core::result::Result::Ok(())
            }
        }
        #errors
    }
}
