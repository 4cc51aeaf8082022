//! The `DataModule` trait's hooks and `#[datamodule]`'s flags, from the catalogue's
//! datamodule versions of the hooks.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ItemImpl;

use crate::catalogue::{DataHook, Hook, HOOKS};
use crate::expand::impl_const;
use crate::types::{self, Place};

/// The hooks a `DataModule` may write.
pub fn hooks() -> impl Iterator<Item = (&'static Hook, DataHook)> {
    HOOKS.iter().filter_map(|h| h.data.map(|d| (h, d)))
}

/// `fn name(&mut self, args..) -> Result<ret>`, types resolved at `place`.
pub fn signature(h: &Hook, d: &DataHook, place: &Place) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let params = h.args.iter().map(|a| {
        let n = format_ident!("{}", a.name);
        let t = types::parse(&types::resolve(a.ty, place));
        quote!(#n: #t)
    });
    let ret = types::parse(&types::resolve(d.ret, place));
    let ret = match (d.fallible, d.ret) {
        (true, _) => quote!(-> ::lightning::Result<#ret>),
        (false, "()") => quote!(),
        (false, _) => quote!(-> #ret),
    };
    quote!(fn #name(&mut self, #(#params),*) #ret)
}

/// Items of `trait DataModule`: a flag and a method with Lightning's default for each hook.
pub fn items() -> TokenStream {
    let items = hooks().map(|(h, d)| {
        let flag = impl_const(h);
        let sig = signature(h, &d, &Place::Module);
        let body: syn::Expr = syn::parse_str(d.default).expect("catalogue default parses");
        let doc = format!(" {}", d.doc);
        let flag_doc = format!(" Set by `#[datamodule]` when the impl writes `{}`.", h.name);
        quote! {
            #[doc = #flag_doc]
            #[doc(hidden)]
            const #flag: bool = false;
            #[doc = #doc]
            #[allow(unused_variables)]
            #[inline]
            #sig { #body }
        }
    });
    quote!(#(#items)*)
}

/// `#[datamodule]`: the impl with an `IMPL_*` flag for each hook it writes (the trainer
/// calls only those, and a written batch-transfer hook replaces the module's), and the
/// marker the `DataModule` trait requires.
pub fn datamodule_impl(mut item: ItemImpl) -> TokenStream {
    let written: Vec<&Hook> = hooks()
        .map(|(h, _)| h)
        .filter(|h| item.items.iter().any(|i| matches!(i, syn::ImplItem::Fn(f) if f.sig.ident == h.name)))
        .collect();
    for h in written {
        let flag = impl_const(h);
        item.items.push(syn::parse_quote!(const #flag: bool = true;));
    }
    let self_ty = &item.self_ty;
    let (ig, _, wc) = item.generics.split_for_impl();
    quote! {
        #item
        impl #ig ::lightning::DataModuleAttribute for #self_ty #wc {}
    }
}
