//! The marker traits the trainer's entry points require: one per hook an entry point needs
//! (the catalogue's `needs`), implemented by `#[lightning_module]` for a module that has it,
//! so that a missing hook is a compile error at the entry point's call.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::catalogue::{Hook, HOOKS};

/// `HasTrainingStep` for `training_step`.
pub fn marker(hook: &Hook) -> Ident {
    let camel: String = hook
        .name
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    format_ident!("Has{}", camel)
}

/// The marker traits, for `lightning-runtime`'s `module::requirements`.
pub fn items() -> TokenStream {
    let items = HOOKS.iter().filter_map(|h| h.needs.map(|n| (h, n))).map(|(h, n)| {
        let name = marker(h);
        let doc = format!(" Implemented when the module has `{}`.", h.name);
        let (unless, or_pass) = if n.unless_given {
            (
                " with `Data::module()`",
                ", or pass `Data::loader(..)` or `Data::datamodule(..)` instead of `Data::module()`",
            )
        } else {
            ("", "")
        };
        let message = format!("`{{Self}}` has no `{}` hook, which `Trainer::{}` needs{unless}", h.name, n.entry);
        let label = format!("`{}` missing", h.name);
        let note = format!(
            "add `fn {}(..)` to the impl of `{{Self}}` marked `#[lightning_module]` (a method of an impl without it is not a hook){or_pass}",
            h.name
        );
        quote! {
            #[doc = #doc]
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            pub trait #name {}
        }
    });
    quote!(#(#items)*)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names() {
        let names: Vec<String> = HOOKS.iter().filter(|h| h.needs.is_some()).map(|h| marker(h).to_string()).collect();
        assert!(names.contains(&"HasTrainingStep".to_string()));
        assert!(names.contains(&"HasPredictDataloader".to_string()));
    }
}
