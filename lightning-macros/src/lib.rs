//! Procedural macros of candle-lightning. Use them through the `lightning` facade:
//! `use lightning::prelude::*;`.
//!
//! Each attribute parses (`ast`), validates against the hook catalogue (`valid`, `catalogue`)
//! and expands (`expand`). Every error of one item is reported together, and the user's
//! items are always emitted, so later errors and IDEs keep working.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, spanned::Spanned, Item};

mod ast;
mod catalogue;
mod data;
mod dispatch;
mod errors;
mod expand;
mod lambda;
mod member;
mod notes;
mod relocate;
mod requirements;
mod traits;
mod types;
mod valid;

use ast::{ImplInput, Kind};
use errors::Errors;

/// Marks a model: on its struct (finds the `VarMap` field, or the one marked `#[params]`)
/// and on its inherent impl (implements `LightningModule` from the hook methods in it).
///
/// On the impl, `#[lightning_module(batch = MyBatch)]` names the batch type when no hook does,
/// and `#[lightning_module(manual_optimization)]` hands the optimizers to `training_step`.
#[proc_macro_attribute]
pub fn lightning_module(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let out = match parse_macro_input!(item as Item) {
        Item::Struct(s) => {
            if !attr.is_empty() {
                errors.push(
                    proc_macro2::TokenStream::from(attr).span(),
                    "`#[lightning_module]` on a struct takes no options; put `batch = ...` on the impl",
                );
            }
            expand::module_struct(s, &mut errors)
        }
        Item::Impl(i) => {
            let mut args = expand::ModuleArgs::default();
            let parser = syn::meta::parser(|meta| {
                if meta.path.is_ident("batch") {
                    args.batch = Some(meta.value()?.parse()?);
                    Ok(())
                } else if meta.path.is_ident("manual_optimization") {
                    args.manual = true;
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown option; `#[lightning_module]` on an impl takes `batch = Type` and `manual_optimization`",
                    ))
                }
            });
            if let Err(e) = syn::parse::Parser::parse(parser, attr) {
                errors.add(e);
            }
            let input = ImplInput::parse(i, &mut errors);
            let bound = valid::validate(&input, Kind::Module, &mut errors);
            let generated = expand::module_impl(&input.item, &bound, &args, &mut errors);
            let item = &input.item;
            quote!(#item #generated)
        }
        other => {
            errors.push(other.span(), "`#[lightning_module]` goes on a struct and on its inherent impl");
            quote!(#other)
        }
    };
    let errors = errors.to_compile_errors();
    quote!(#out #errors).into()
}

/// Marks a callback's inherent impl: implements `Callback<M>` from the hook methods in it.
///
/// Options: `#[callback(monitoring)]` (runs after the module in `on_train_epoch_end`, like
/// Lightning's checkpoint and early-stopping callbacks), `#[callback(state_key = "name")]`.
#[proc_macro_attribute]
pub fn callback(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let mut args = expand::CallbackArgs::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("monitoring") {
            args.monitoring = true;
            Ok(())
        } else if meta.path.is_ident("state_key") {
            args.state_key = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("unknown option; `#[callback]` takes `monitoring` and `state_key = \"...\"`"))
        }
    });
    if let Err(e) = syn::parse::Parser::parse(parser, attr) {
        errors.add(e);
    }
    let out = match parse_macro_input!(item as Item) {
        Item::Impl(i) => {
            let input = ImplInput::parse(i, &mut errors);
            let bound = valid::validate(&input, Kind::Callback, &mut errors);
            let generated = expand::callback_impl(&input.item, &bound, &args, &mut errors);
            let item = &input.item;
            quote!(#item #generated)
        }
        other => {
            errors.push(other.span(), "`#[callback]` goes on the callback's inherent impl (`impl MyCallback { ... }`)");
            quote!(#other)
        }
    };
    let errors = errors.to_compile_errors();
    quote!(#out #errors).into()
}

/// Marks `impl DataModule for MyData { ... }`: sets a flag for each hook the impl writes, so
/// the trainer calls only those and each batch-transfer hook it writes replaces the module's,
/// as Lightning does for a datamodule that overrides one. The `DataModule` trait requires
/// it, so no written hook is silently ignored.
#[proc_macro_attribute]
pub fn datamodule(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    if !attr.is_empty() {
        errors.push(proc_macro2::TokenStream::from(attr).span(), "`#[datamodule]` takes no options");
    }
    let out = match parse_macro_input!(item as Item) {
        Item::Impl(i)
            if i.trait_
                .as_ref()
                .is_some_and(|(_, p, _)| p.segments.last().is_some_and(|s| s.ident == "DataModule")) =>
        {
            data::datamodule_impl(i)
        }
        other => {
            errors.push(
                other.span(),
                "`#[datamodule]` goes on the data module's trait impl (`impl DataModule for MyData { ... }`)",
            );
            quote!(#other)
        }
    };
    let errors = errors.to_compile_errors();
    quote!(#out #errors).into()
}

/// `#[derive(Relocate)]`: moves every field to the trainer's device and dtype (layers,
/// tensors, variables, `Vec`/`Option`/`Box`/arrays of them, plain numbers, `Device` and
/// `DType`). A field whose type cannot relocate is a compile error at that field; mark one
/// that holds no tensors `#[relocate(skip)]`.
#[proc_macro_derive(Relocate, attributes(relocate))]
pub fn derive_relocate(item: TokenStream) -> TokenStream {
    relocate::derive(parse_macro_input!(item as syn::DeriveInput)).into()
}

fn outside(attr: &str, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let msg = format!(
        "`#[{attr}]` only works on a method inside a `{}` or `{}` impl block: add that attribute to the impl",
        Kind::Module.attr(),
        Kind::Callback.attr()
    );
    let err = syn::Error::new(item.span(), msg).to_compile_error();
    quote!(#item #err).into()
}

/// Marks a method as a hook: `#[hook]` (the method's name) or `#[hook(on_batch_begin)]`.
/// Consumed by `#[lightning_module]` / `#[callback]`; an error anywhere else.
#[proc_macro_attribute]
pub fn hook(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("hook", item)
}

/// Marks a method as an ordinary method, whatever its name. Consumed by
/// `#[lightning_module]` / `#[callback]`; an error anywhere else.
#[proc_macro_attribute]
pub fn not_hook(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("not_hook", item)
}

#[doc(hidden)]
#[proc_macro]
pub fn __module_items(_: TokenStream) -> TokenStream {
    traits::module_items().into()
}

#[doc(hidden)]
#[proc_macro]
pub fn __callback_items(_: TokenStream) -> TokenStream {
    traits::callback_items().into()
}

#[doc(hidden)]
#[proc_macro]
pub fn __callback_list_items(_: TokenStream) -> TokenStream {
    traits::list_items().into()
}

#[doc(hidden)]
#[proc_macro]
pub fn __callback_list_impls(_: TokenStream) -> TokenStream {
    traits::list_impls().into()
}

#[doc(hidden)]
#[proc_macro]
pub fn __hook_arg_traits(_: TokenStream) -> TokenStream {
    traits::arg_traits().into()
}

#[doc(hidden)]
#[proc_macro]
pub fn __requirement_items(_: TokenStream) -> TokenStream {
    requirements::items().into()
}

#[doc(hidden)]
#[proc_macro]
pub fn __datamodule_items(_: TokenStream) -> TokenStream {
    data::items().into()
}

#[doc(hidden)]
#[proc_macro]
pub fn __dispatch_items(_: TokenStream) -> TokenStream {
    dispatch::items().into()
}

#[doc(hidden)]
#[proc_macro]
pub fn __lambda_hooks(mac: TokenStream) -> TokenStream {
    lambda::table(parse_macro_input!(mac as syn::Ident)).into()
}

/// Adds to a runtime trait the `on_unimplemented` note that names hooks (`is_callback`,
/// `hook_return` or `fit_data`), written from the catalogue: that attribute takes only literals.
#[doc(hidden)]
#[proc_macro_attribute]
pub fn __hook_note(attr: TokenStream, item: TokenStream) -> TokenStream {
    notes::attach(&parse_macro_input!(attr as syn::Ident), item.into()).into()
}
