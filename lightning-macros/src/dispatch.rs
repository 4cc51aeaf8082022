//! The trainer's hook dispatcher, generated from the catalogue: one function per hook that
//! calls the datamodule, the callbacks and the module in the catalogue's order, and records
//! the running hook (its name, and where it may log) in the trainer's state while they run,
//! restoring the outer hook's after, as Lightning's `_call_*_hook` keep `_current_fx_name`.
//! A hook nobody implements compiles to nothing: each part is behind its `IMPL_*` constant.
//! Expanded once, in `lightning-runtime/src/trainer/dispatch.rs`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::catalogue::{DataHook, DataOrder, Hook, Order, HOOKS};
use crate::expand::impl_const;
use crate::types::{self, Place};

/// The dispatcher's items: the hook names, a function per hook, the datamodule's own
/// functions for the hooks it runs apart, and the warning for replaced transfer hooks.
pub fn items() -> TokenStream {
    let names = HOOKS.iter().map(|h| {
        let c = name_const(h);
        let n = h.name;
        quote!(pub(crate) const #c: &str = #n;)
    });
    let literal = HOOKS.iter().map(|h| {
        let id = format_ident!("{}", h.name);
        let n = h.name;
        quote!((#id) => { #n };)
    });
    let hooks = HOOKS.iter().map(|h| if h.state { state_fn(h) } else { hook_fn(h) });
    let apart = HOOKS.iter().filter(|h| h.data.is_some_and(|d| d.order == DataOrder::Apart)).map(apart_fn);
    let warn = replaced_warning();
    quote! {
        /// Every hook's name, for messages that name one.
        #[allow(dead_code)]
        pub(crate) mod name { #(#names)* }
        /// A hook's name as a literal, for `concat!` in messages: `hook_name!(training_step)`
        /// (anything else is a compile error).
        #[allow(unused_macros)]
        macro_rules! hook_name { #(#literal)* }
        #[allow(unused_imports)]
        pub(crate) use hook_name;
        #(#hooks)*
        #(#apart)*
        #warn
    }
}

fn name_const(h: &Hook) -> Ident {
    format_ident!("{}", h.name.to_uppercase())
}

/// A catalogue type, generic over the module `M`.
fn ty(src: &str) -> TokenStream {
    let t = types::parse(&types::resolve(src, &Place::Callback("M")).replace("<Self>", "<M>"));
    quote!(#t)
}

/// The datamodule's part, when it runs with the others.
fn data(h: &Hook) -> Option<DataHook> {
    h.data.filter(|d| d.order != DataOrder::Apart)
}

/// The hook's arguments as the dispatcher passes them on (`&mut` ones reborrowed).
fn args(h: &Hook) -> Vec<TokenStream> {
    h.args
        .iter()
        .map(|a| {
            let n = format_ident!("{}", a.name);
            if a.ty.starts_with("&mut ") {
                quote!(&mut *#n)
            } else {
                quote!(#n)
            }
        })
        .collect()
}

/// Every hook takes the run's callback list, which also carries the trainer's profiler
/// (module-only hooks use it for that alone).
fn generics(h: &Hook) -> TokenStream {
    let cbs = Some(quote!(, L: ::lightning::CallbackList<M>));
    let dm = data(h).map(|_| quote!(, DM: ::lightning::DataModule<Batch = <M as ::lightning::LightningModule>::Batch>));
    quote!(<M: ::lightning::LightningModule #cbs #dm>)
}

fn params(h: &Hook) -> TokenStream {
    let state = h.trainer.then(|| quote!(state: &mut ::lightning::TrainerState,));
    let cbs = quote!(cbs: &mut L,);
    let dm = data(h).map(|_| quote!(dm: &mut DM,));
    let tys: Vec<_> = h.args.iter().map(|a| ty(a.ty)).collect();
    let names = h.args.iter().map(|a| format_ident!("{}", a.name));
    let between = h.between.then(|| {
        quote!(between: impl ::core::ops::FnOnce(&mut ::lightning::TrainerState, &mut M, &mut L #(, #tys)*) -> ::lightning::Result<()>)
    });
    quote!(#state model: &mut M, #cbs #dm #(#names: #tys,)* #between)
}

fn ret(h: &Hook) -> TokenStream {
    match data(h) {
        Some(d) if d.order == DataOrder::Fallback => {
            let from_dm = types::parse(&types::resolve(h.module_ret, &Place::Data("DM")));
            let from_module = ty(h.module_ret);
            quote!(::core::option::Option<::lightning::Either<#from_dm, #from_module>>)
        }
        _ if h.side.module() => ty(h.module_ret),
        _ if h.maps_batch => ty("$Batch"),
        _ => quote!(()),
    }
}

/// The callbacks' call (an expression), in one phase of a split hook when `monitoring` is set.
fn callbacks(h: &Hook, monitoring: Option<bool>) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let args = args(h);
    let phase = monitoring.map(|m| quote!(, #m));
    quote!(<L as ::lightning::CallbackList<M>>::#name(&mut *cbs, &mut *state, &mut *model #(, #args)* #phase))
}

/// The callbacks' call as a statement (a batch map rebinds the batch).
fn callbacks_stmt(h: &Hook, monitoring: Option<bool>) -> TokenStream {
    let call = callbacks(h, monitoring);
    if h.maps_batch {
        quote!(let batch = #call?;)
    } else {
        quote!(#call?;)
    }
}

fn module_call(h: &Hook) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let args = args(h);
    let state = h.trainer.then(|| quote!(&mut *state,));
    quote!(<M as ::lightning::LightningModule>::#name(&mut *model, #state #(#args),*)?)
}

fn data_call(h: &Hook) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let args = args(h);
    quote!(<DM as ::lightning::DataModule>::#name(&mut *dm, #(#args),*))
}

/// The module's part: a statement binding `__out` (or running it, for `()`), with the
/// datamodule's version in its place where it replaces the module's or comes first.
fn module_stmt(h: &Hook) -> TokenStream {
    let call = module_call(h);
    let flag = impl_const(h);
    let value = match data(h).map(|d| d.order) {
        Some(DataOrder::Replaces) => {
            let dm = data_call(h);
            quote!(if <DM as ::lightning::DataModule>::#flag { #dm? } else { #call })
        }
        Some(DataOrder::Fallback) => {
            let dm = data_call(h);
            quote! {
                match if <DM as ::lightning::DataModule>::#flag { #dm? } else { ::core::option::Option::None } {
                    ::core::option::Option::Some(l) => ::core::option::Option::Some(::lightning::Either::Left(l)),
                    ::core::option::Option::None if <M as ::lightning::LightningModule>::#flag => {
                        ::core::option::Option::Some(::lightning::Either::Right(#call))
                    }
                    ::core::option::Option::None => ::core::option::Option::None,
                }
            }
        }
        _ => call,
    };
    if h.module_ret == "()" {
        quote!(#value;)
    } else {
        quote!(let __out = #value;)
    }
}

/// The hook's calls, in the catalogue's order, ending in the value it returns.
fn body(h: &Hook) -> TokenStream {
    let flag = impl_const(h);
    let mut out = Vec::new();
    let dm = data(h);
    if dm.is_some_and(|d| d.order == DataOrder::First) {
        let call = data_call(h);
        out.push(quote!(if <DM as ::lightning::DataModule>::#flag { #call?; }));
    }
    let module = h.side.module().then(|| module_stmt(h));
    let between = h.between.then(|| {
        let args = args(h);
        quote!(between(&mut *state, &mut *model, &mut *cbs #(, #args)*)?;)
    });
    let last = dm.is_some_and(|d| d.order == DataOrder::Last);
    match (h.side.callback(), h.order) {
        (false, _) => out.extend(module),
        (true, Order::CallbacksFirst) if last => {
            // the datamodule's hook runs whatever the callbacks returned
            let call = callbacks(h, None);
            let dm = data_call(h);
            out.push(quote! {
                let __callbacks = #call;
                if <DM as ::lightning::DataModule>::#flag { #dm; }
                __callbacks?;
            });
            out.extend(module);
        }
        (true, Order::CallbacksFirst) => {
            out.push(callbacks_stmt(h, None));
            out.extend(between);
            out.extend(module);
        }
        (true, Order::ModuleFirst) => {
            out.extend(module);
            out.extend(between);
            out.push(callbacks_stmt(h, None));
        }
        (true, Order::MonitoringSplit) => {
            out.push(callbacks_stmt(h, Some(false)));
            out.extend(module);
            out.push(callbacks_stmt(h, Some(true)));
        }
    }
    let tail = if h.side.module() && h.module_ret != "()" {
        quote!(__out)
    } else if h.maps_batch {
        quote!(batch)
    } else {
        quote!(())
    };
    quote!(#(#out)* ::core::result::Result::Ok(#tail))
}

/// Runs `body` with the hook recorded as running when `any` (some part implements it).
fn recorded(h: &Hook, any: TokenStream, ret: &TokenStream, body: TokenStream) -> TokenStream {
    let state = match h.state_via {
        Some(e) => syn::parse_str::<syn::Expr>(e).map(|e| quote!(#e)).expect("catalogue `state_via` parses"),
        None => quote!(state),
    };
    let c = name_const(h);
    let scope = format_ident!("{}", format!("{:?}", h.scope));
    let works = h.default_works();
    quote! {
        let __outer = if #any {
            ::core::option::Option::Some(#state.__enter_hook(name::#c, ::lightning::__private::LogScope::#scope))
        } else {
            ::core::option::Option::None
        };
        // the trainer's profiler times the hook (nothing without one: the flag is a constant),
        // when written, or when its default does the trainer's work (backward, clipping, ...)
        let __profiled = <L as ::lightning::CallbackList<M>>::__PROFILED && (#works || __outer.is_some());
        if __profiled {
            cbs.__profile(name::#c, true);
        }
        let __result = (|| -> ::lightning::Result<#ret> { #body })();
        if __profiled {
            cbs.__profile(name::#c, false);
        }
        if let ::core::option::Option::Some((hook, scope)) = __outer {
            #state.__enter_hook(hook, scope);
        }
        __result
    }
}

fn doc(h: &Hook) -> String {
    let mut parts = Vec::new();
    let dm = data(h).map(|d| d.order);
    if dm == Some(DataOrder::First) {
        parts.push("the datamodule");
    }
    let cbs = if h.monitoring_split() { "the callbacks (monitoring ones after the module)" } else { "the callbacks" };
    match (h.side.callback(), h.side.module(), h.order) {
        (true, true, Order::ModuleFirst) => parts.extend(["the module", "the callbacks"]),
        (true, true, _) => parts.extend([cbs, "the module"]),
        (true, false, _) => parts.push(cbs),
        (false, _, _) => parts.push(match dm {
            Some(DataOrder::Replaces) => "the datamodule's, if it writes it, else the module's",
            Some(DataOrder::Fallback) => "the datamodule's, else the module's",
            _ => "the module",
        }),
    }
    if dm == Some(DataOrder::Last) {
        parts.push("the datamodule");
    }
    let between = if h.between { " (the trainer's `between` runs after the first side)" } else { "" };
    format!(" `{}`: {}{between}.", h.name, parts.join(", then "))
}

fn hook_fn(h: &Hook) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let (generics, params, ret) = (generics(h), params(h), ret(h));
    let flag = impl_const(h);
    let module = h.side.module().then(|| quote!(<M as ::lightning::LightningModule>::#flag));
    let cbs = h.side.callback().then(|| quote!(<L as ::lightning::CallbackList<M>>::#flag));
    let any = module.into_iter().chain(cbs);
    let body = recorded(h, quote!(false #(|| #any)*), &ret, body(h));
    let doc = doc(h);
    quote! {
        #[doc = #doc]
        #[inline(always)]
        pub(crate) fn #name #generics (#params) -> ::lightning::Result<#ret> { #body }
    }
}

/// The callbacks' state hooks: the list collects or restores each callback's by its key.
fn state_fn(h: &Hook) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let value = quote!(::lightning::serde_json::Value);
    let (param, ret, body) = if h.callback_ret == "()" {
        (
            quote!(states: &::std::collections::BTreeMap<::std::string::String, #value>),
            quote!(()),
            quote!(<L as ::lightning::CallbackList<M>>::restore_state(&mut *cbs, &mut *state, &mut *model, states)),
        )
    } else {
        (
            quote!(),
            quote!(::std::vec::Vec<(&'static str, #value)>),
            quote! {
                let mut out = ::std::vec::Vec::new();
                <L as ::lightning::CallbackList<M>>::collect_state(&mut *cbs, &mut *state, &mut *model, &mut out)?;
                ::core::result::Result::Ok(out)
            },
        )
    };
    let body = recorded(h, quote!(true), &ret, body);
    let doc = format!(" `{}`: every stateful callback's, by its `STATE_KEY`.", h.name);
    quote! {
        #[doc = #doc]
        pub(crate) fn #name<M: ::lightning::LightningModule, L: ::lightning::CallbackList<M>>(
            state: &mut ::lightning::TrainerState, model: &mut M, cbs: &mut L, #param
        ) -> ::lightning::Result<#ret> { #body }
    }
}

/// The datamodule's version of a hook it runs apart (`datamodule_state_dict`, ...).
fn apart_fn(h: &Hook) -> TokenStream {
    let d = h.data.expect("a datamodule hook");
    let name = format_ident!("{}", h.name);
    let fn_name = format_ident!("datamodule_{}", h.name);
    let params = h.args.iter().map(|a| {
        let n = format_ident!("{}", a.name);
        let t = types::parse(&types::resolve(a.ty, &Place::Data("DM")));
        quote!(#n: #t)
    });
    let args = args(h);
    let ret = types::parse(&types::resolve(d.ret, &Place::Data("DM")));
    let doc = format!(" The datamodule's `{}`.", h.name);
    quote! {
        #[doc = #doc]
        #[inline]
        pub(crate) fn #fn_name<DM: ::lightning::DataModule>(dm: &mut DM, #(#params),*) -> ::lightning::Result<#ret> {
            <DM as ::lightning::DataModule>::#name(dm, #(#args),*)
        }
    }
}

/// Lightning's warning for a hook written on both the module and a datamodule whose version
/// replaces the module's.
fn replaced_warning() -> TokenStream {
    let checks = HOOKS.iter().filter(|h| data(h).is_some_and(|d| d.order == DataOrder::Replaces)).map(|h| {
        let flag = impl_const(h);
        let c = name_const(h);
        quote! {
            if <M as ::lightning::LightningModule>::#flag && <DM as ::lightning::DataModule>::#flag {
                ::lightning::dist::rank_zero_warn(::core::format_args!(
                    "You have overridden `{}` in both `LightningModule` and `LightningDataModule`. It will use the implementation from `LightningDataModule` instance.",
                    name::#c
                ));
            }
        }
    });
    quote! {
        /// Lightning's warning for a batch-transfer hook written on both the module and the datamodule.
        pub(crate) fn warn_replaced<M: ::lightning::LightningModule, DM: ::lightning::DataModule>() {
            #(#checks)*
        }
    }
}
