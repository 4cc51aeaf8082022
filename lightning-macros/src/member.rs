//! `Callback`'s hidden methods for what a callback list does with one member: run it in one
//! phase of a split hook, and save or restore its state under its `STATE_KEY`. Generated
//! from the catalogue, so that hooks are called only by generated code.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::catalogue::{Hook, HOOKS};
use crate::expand::impl_const;
use crate::types::{self, Place};

/// The hidden `Callback` method that runs a split hook in one phase.
pub fn split_method(h: &Hook) -> proc_macro2::Ident {
    format_ident!("__{}_split", h.name)
}

fn split(h: &Hook) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let method = split_method(h);
    let names: Vec<_> = h.args.iter().map(|a| format_ident!("{}", a.name)).collect();
    let tys = h.args.iter().map(|a| types::parse(&types::resolve(a.ty, &Place::Callback("M"))));
    let doc = format!(
        " `{}` in the phase `monitoring` (a split hook): a callback runs in its own phase, a [`Nested`] list passes the phase on.",
        h.name
    );
    quote! {
        #[doc = #doc]
        #[doc(hidden)]
        #[inline]
        fn #method(&mut self, trainer: &mut ::lightning::TrainerState, module: &mut M, #(#names: #tys,)* monitoring: bool) -> ::lightning::Result<()> {
            if Self::MONITORING == monitoring {
                self.#name(trainer, module #(, #names)*)?;
            }
            ::core::result::Result::Ok(())
        }
    }
}

/// `__collect_state`, `__state_keys` (from the state hook that returns the state) and
/// `__restore_state` (from the one that takes it).
fn state(save: &Hook, load: &Hook) -> TokenStream {
    let (save_name, load_name) = (format_ident!("{}", save.name), format_ident!("{}", load.name));
    let (save_flag, load_flag) = (impl_const(save), impl_const(load));
    quote! {
        /// Appends this callback's `(STATE_KEY, state_dict)` when it has state; a [`Nested`]
        /// list appends each of its members'.
        #[doc(hidden)]
        #[inline]
        fn __collect_state(
            &mut self,
            trainer: &mut ::lightning::TrainerState,
            module: &mut M,
            out: &mut ::std::vec::Vec<(&'static str, ::lightning::serde_json::Value)>,
        ) -> ::lightning::Result<()> {
            if Self::#save_flag {
                let state = self.#save_name(trainer, module)?;
                out.push((Self::STATE_KEY, state));
            }
            ::core::result::Result::Ok(())
        }

        /// Gives this callback its saved state, when it has some.
        #[doc(hidden)]
        #[inline]
        fn __restore_state(
            &mut self,
            trainer: &mut ::lightning::TrainerState,
            module: &mut M,
            states: &::std::collections::BTreeMap<::std::string::String, ::lightning::serde_json::Value>,
        ) -> ::lightning::Result<()> {
            if Self::#load_flag {
                if let ::core::option::Option::Some(state) = states.get(Self::STATE_KEY) {
                    self.#load_name(trainer, module, state)?;
                }
            }
            ::core::result::Result::Ok(())
        }

        /// This callback's state key, when it has state.
        #[doc(hidden)]
        #[inline]
        fn __state_keys(out: &mut ::std::vec::Vec<&'static str>) {
            if Self::#save_flag {
                out.push(Self::STATE_KEY);
            }
        }
    }
}

/// The hidden methods, for `trait Callback<M>`.
pub fn items() -> TokenStream {
    let splits = HOOKS.iter().filter(|h| h.side.callback() && h.monitoring_split()).map(split);
    let save = HOOKS.iter().find(|h| h.state && h.callback_ret != "()").expect("catalogue: a state hook returns it");
    let load = HOOKS.iter().find(|h| h.state && !h.args.is_empty()).expect("catalogue: a state hook takes it");
    let state = state(save, load);
    quote!(#(#splits)* #state)
}
