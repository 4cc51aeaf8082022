//! `LambdaCallback`'s hook table, from the catalogue: the runtime's `lambda_callback!`
//! declares the callback from one line per hook.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::catalogue::{lambda_hooks, LAMBDA_ARGS};
use crate::types::{self, Place};

/// `$mac! { hook => call_hook(arg: Type, ..); .. }` for every hook `LambdaCallback` offers,
/// with the arguments its closures get.
pub fn table(mac: syn::Ident) -> TokenStream {
    let lines = lambda_hooks().map(|h| {
        let hook = format_ident!("{}", h.name);
        let call = format_ident!("call_{}", h.name);
        let args = h.args.iter().filter(|a| LAMBDA_ARGS.contains(&a.name)).map(|a| {
            let n = format_ident!("{}", a.name);
            let t = types::parse(&types::resolve(a.ty, &Place::Module));
            quote!(#n: #t)
        });
        quote!(#hook => #call(#(#args),*);)
    });
    quote!(#mac! { #(#lines)* })
}
