//! Generates the runtime's hook traits and callback-list impls from the catalogue.
//! Called once each, from `lightning-runtime`, through hidden function-like macros.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::catalogue::{Hook, HOOKS};
use crate::expand::{impl_const, signature};
use crate::member::split_method;
use crate::types::Place;

/// Hooks a callback list dispatches generically (state is collected separately).
fn list_hooks() -> impl Iterator<Item = &'static Hook> {
    HOOKS.iter().filter(|h| h.side.callback() && !h.state)
}

fn default_body(hook: &Hook, module_side: bool) -> TokenStream {
    let src = if module_side { hook.module_default } else { hook.callback_default };
    let expr: syn::Expr = syn::parse_str(&src.replace("$hook", hook.name)).expect("catalogue default parses");
    quote!(#expr)
}

fn doc(hook: &Hook) -> String {
    let mut d = format!(" `{}`: {}", hook.name, hook.doc);
    if !hook.args.is_empty() {
        let names: Vec<_> = hook.args.iter().map(|a| format!("`{}`", a.name)).collect();
        d.push_str(&format!("\n\n Arguments a hook method may take, by name: {}", names.join(", ")));
        if hook.trainer {
            d.push_str(", `trainer`");
        }
        d.push('.');
    }
    d
}

/// Items of `trait LightningModule` (`module_side`) or `trait Callback<M>`: a flag and a
/// method with Lightning's default for every hook of that side.
fn side_items(module_side: bool) -> TokenStream {
    let place = if module_side { Place::Module } else { Place::Callback("M") };
    let items = HOOKS.iter().filter(|h| if module_side { h.side.module() } else { h.side.callback() }).map(|h| {
        let flag = impl_const(h);
        let sig = signature(h, &place, module_side, false);
        let body = default_body(h, module_side);
        let doc = doc(h);
        quote! {
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

pub fn module_items() -> TokenStream {
    side_items(true)
}

pub fn callback_items() -> TokenStream {
    let mut items = side_items(false);
    items.extend(crate::member::items());
    items
}

/// The trait a hook argument's value passes through on its way to the user's method, one
/// per hook and argument, so that a parameter of the wrong type is reported at the
/// parameter as "hook `h` passes `arg: T`" (rustc's own mismatch would suggest a
/// conversion inside the parameter list). `&mut T` also passes as `&T`.
pub fn arg_name(hook: &str, arg: &str) -> proc_macro2::Ident {
    format_ident!("{}__{}", hook, arg)
}

/// Whether an argument's type can be checked through its pass-through trait (an argument
/// the hook offers as `impl Trait` is generic and is passed as it is).
pub fn checked_arg(ty: &str) -> bool {
    !ty.contains("impl ")
}

/// The pass-through traits of every hook argument (see [`arg_name`]).
pub fn arg_traits() -> TokenStream {
    let items = HOOKS.iter().flat_map(|h| h.args.iter().map(move |a| (h, a))).filter(|(_, a)| checked_arg(a.ty)).map(
        |(h, a)| {
            let name = arg_name(h.name, a.name);
            let message = format!("hook `{}` passes `{}: {{Self}}`, not `{{T}}`", h.name, a.name);
            let label = format!("`{}` passes `{}: {{Self}}`: write that type here", h.name, a.name);
            quote! {
                #[doc(hidden)]
                #[allow(non_camel_case_types)]
                #[diagnostic::on_unimplemented(message = #message, label = #label)]
                pub trait #name<T> { fn pass(self) -> T; }
                impl<T> #name<T> for T {
                    #[inline(always)]
                    fn pass(self) -> T { self }
                }
                #[diagnostic::do_not_recommend]
                impl<'a, T: ?Sized> #name<&'a T> for &'a mut T {
                    #[inline(always)]
                    fn pass(self) -> &'a T { self }
                }
            }
        },
    );
    quote!(#(#items)*)
}

/// Items of `trait CallbackList<M>`.
pub fn list_items() -> TokenStream {
    let items = list_hooks().map(|h| {
        let flag = impl_const(h);
        let sig = signature(h, &Place::Callback("M"), false, true);
        let doc = doc(h);
        quote! {
            #[doc(hidden)]
            const #flag: bool;
            #[doc = #doc]
            #sig;
        }
    });
    quote!(#(#items)*)
}

/// One member of a list: how to reach it, its type, and the trait that dispatches it.
struct Member {
    expr: TokenStream,
    ty: TokenStream,
    /// `true`: a single `Callback` (filtered by `MONITORING` where the hook splits);
    /// `false`: a nested `CallbackList` (passes the flag on).
    single: bool,
}

/// The argument names a hook's methods are called with (the list's extra flag aside).
fn call_args(h: &Hook) -> Vec<TokenStream> {
    let mut args = Vec::new();
    if h.trainer {
        args.push(quote!(trainer));
    }
    args.push(quote!(module));
    args.extend(h.args.iter().map(|a| {
        let n = format_ident!("{}", a.name);
        quote!(#n)
    }));
    args
}

fn dispatch(h: &Hook, members: &[Member]) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let flag = impl_const(h);
    let args = call_args(h);
    let returns_batch = h.maps_batch;
    let calls = members.iter().map(|m| {
        let (expr, ty) = (&m.expr, &m.ty);
        let (path, cond, extra) = if m.single && h.monitoring_split() {
            // through the phase-aware method, so that a `Nested` member passes the phase on
            let split = split_method(h);
            let cond = quote!(<#ty as ::lightning::Callback<M>>::#flag);
            let call = quote!(<#ty as ::lightning::Callback<M>>::#split(#expr, #(#args,)* __monitoring)?;);
            return quote! { if #cond { #call } };
        } else if m.single {
            (quote!(<#ty as ::lightning::Callback<M>>), quote!(<#ty as ::lightning::Callback<M>>::#flag), quote!())
        } else {
            let extra = h.monitoring_split().then(|| quote!(, __monitoring));
            (
                quote!(<#ty as ::lightning::CallbackList<M>>),
                quote!(<#ty as ::lightning::CallbackList<M>>::#flag),
                quote!(#extra),
            )
        };
        if returns_batch {
            quote! { let batch = if #cond { #path::#name(#expr, #(#args),* #extra)? } else { batch }; }
        } else {
            quote! { if #cond { #path::#name(#expr, #(#args),* #extra)?; } }
        }
    });
    let tail =
        if returns_batch { quote!(::core::result::Result::Ok(batch)) } else { quote!(::core::result::Result::Ok(())) };
    let sig = signature(h, &Place::Callback("M"), false, true);
    quote! {
        #[inline(always)]
        #[allow(unused_variables)]
        #sig { #(#calls)* #tail }
    }
}

fn flags(members: &[Member]) -> TokenStream {
    let items = list_hooks().map(|h| {
        let flag = impl_const(h);
        let terms = members.iter().map(|m| {
            let ty = &m.ty;
            if m.single {
                quote!(<#ty as ::lightning::Callback<M>>::#flag)
            } else {
                quote!(<#ty as ::lightning::CallbackList<M>>::#flag)
            }
        });
        quote!(const #flag: bool = false #(|| #terms)*;)
    });
    quote!(#(#items)*)
}

fn state_methods(members: &[Member]) -> TokenStream {
    let collect = members.iter().map(|m| {
        let (e, ty) = (&m.expr, &m.ty);
        if m.single {
            quote!(<#ty as ::lightning::Callback<M>>::__collect_state(#e, trainer, module, out)?;)
        } else {
            quote!(<#ty as ::lightning::CallbackList<M>>::collect_state(#e, trainer, module, out)?;)
        }
    });
    let restore = members.iter().map(|m| {
        let (e, ty) = (&m.expr, &m.ty);
        if m.single {
            quote!(<#ty as ::lightning::Callback<M>>::__restore_state(#e, trainer, module, states)?;)
        } else {
            quote!(<#ty as ::lightning::CallbackList<M>>::restore_state(#e, trainer, module, states)?;)
        }
    });
    let keys = members.iter().map(|m| {
        let ty = &m.ty;
        if m.single {
            quote!(<#ty as ::lightning::Callback<M>>::__state_keys(out);)
        } else {
            quote!(<#ty as ::lightning::CallbackList<M>>::state_keys(out);)
        }
    });
    quote! {
        #[allow(unused_variables)]
        fn collect_state(&mut self, trainer: &mut ::lightning::TrainerState, module: &mut M,
            out: &mut ::std::vec::Vec<(&'static str, ::lightning::serde_json::Value)>) -> ::lightning::Result<()> {
            #(#collect)* ::core::result::Result::Ok(())
        }
        #[allow(unused_variables)]
        fn restore_state(&mut self, trainer: &mut ::lightning::TrainerState, module: &mut M,
            states: &::std::collections::BTreeMap<::std::string::String, ::lightning::serde_json::Value>) -> ::lightning::Result<()> {
            #(#restore)* ::core::result::Result::Ok(())
        }
        #[allow(unused_variables)]
        fn state_keys(out: &mut ::std::vec::Vec<&'static str>) { #(#keys)* }
    }
}

fn list_body(members: &[Member]) -> TokenStream {
    let flags = flags(members);
    let state = state_methods(members);
    let tuning = tuning_methods(members);
    let methods = list_hooks().map(|h| dispatch(h, members));
    quote!(#flags #state #tuning #(#methods)*)
}

/// `__TUNES` and `__tune`: the finder callbacks' sweeps before `fit`, in list order; a
/// list without a finder compiles them away.
fn tuning_methods(members: &[Member]) -> TokenStream {
    let trait_of =
        |m: &Member| if m.single { quote!(::lightning::Callback<M>) } else { quote!(::lightning::CallbackList<M>) };
    let terms = members.iter().map(|m| {
        let (ty, tr) = (&m.ty, trait_of(m));
        quote!(<#ty as #tr>::__TUNES)
    });
    let calls = members.iter().map(|m| {
        let (e, ty, tr) = (&m.expr, &m.ty, trait_of(m));
        quote! {
            if <#ty as #tr>::__TUNES {
                <#ty as #tr>::__tune(#e, fit)?;
            }
        }
    });
    quote! {
        const __TUNES: bool = false #(|| #terms)*;
        #[allow(unused_variables)]
        fn __tune<X: ::lightning::tuner::TuneFit<M>>(&mut self, fit: &mut X) -> ::lightning::Result<()> {
            #(#calls)* ::core::result::Result::Ok(())
        }
    }
}

/// Callbacks a flat tuple may hold; nested tuples lift the limit (`Nested`).
const MAX_TUPLE: usize = 32;

/// `CallbackList` impls: tuples of callbacks up to `MAX_TUPLE`, `Chain` of two lists,
/// `Option` of a list; a tuple of callbacks as a `Nested` callback.
pub fn list_impls() -> TokenStream {
    let mut out = tuple_impls();
    out.extend(nested_impls());
    out.extend(chain_and_option_impls());
    out.extend(profiler_impls());
    out
}

/// `Profiling<P>`: the trainer's profiler as the first member of a run's list, with no hook
/// of its own, only `__profile` (see `lightning::profiler`).
fn profiler_impls() -> TokenStream {
    let profiler = list_body(&[]);
    quote! {
        // the trainer's profiler, first in the run's list: no hook, only `__profile`
        impl<'a, M: ::lightning::LightningModule, P: ::lightning::Profiler>
            ::lightning::CallbackList<M> for ::lightning::Profiling<'a, P> {
            #profiler
            const __PROFILED: bool = <P as ::lightning::Profiler>::ENABLED;
            #[inline(always)]
            fn __profile(&mut self, action: &'static str, start: bool) {
                if start {
                    <P as ::lightning::Profiler>::start(self.0, action);
                } else {
                    <P as ::lightning::Profiler>::stop(self.0, action);
                }
            }
        }
        impl<'a, P> ::lightning::CallbackTuple for ::lightning::Profiling<'a, P> {
            type List = Self;
            #[inline]
            fn into_list(self) -> Self { self }
        }
    }
}

fn tuple_impls() -> TokenStream {
    let mut out = TokenStream::new();
    for n in 0..=MAX_TUPLE {
        let tys: Vec<_> = (0..n).map(|i| format_ident!("C{}", i)).collect();
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let idx = syn::Index::from(i);
                let ty = &tys[i];
                Member { expr: quote!(&mut self.#idx), ty: quote!(#ty), single: true }
            })
            .collect();
        let body = list_body(&members);
        let tuple = if n == 1 { quote!((C0,)) } else { quote!((#(#tys),*)) };
        // each member through `IsCallback`'s projection: a member without `#[callback]`
        // leaves the list's type unknown, so the error at `.callbacks(..)` is the only one
        let idx = (0..n).map(syn::Index::from);
        let (list_ty, list_expr) = if n == 0 {
            (quote!(()), quote!())
        } else if n == 1 {
            (quote!((<C0 as ::lightning::IsCallback>::Callback,)), quote!((self.0.into_callback(),)))
        } else {
            (quote!((#(<#tys as ::lightning::IsCallback>::Callback),*)), quote!((#(self.#idx.into_callback()),*)))
        };
        out.extend(quote! {
            impl<M: ::lightning::LightningModule #(, #tys: ::lightning::Callback<M>)*> ::lightning::CallbackList<M> for #tuple {
                #body
            }
            impl<#(#tys: ::lightning::IsCallback),*> ::lightning::CallbackTuple for #tuple {
                type List = #list_ty;
                #[inline]
                fn into_list(self) -> Self::List { #list_expr }
            }
        });
        if n > 0 {
            // a tuple inside a tuple: a `Nested` member, its callbacks called in order
            out.extend(quote! {
                impl<#(#tys: ::lightning::IsCallback),*> ::lightning::IsCallback for #tuple {
                    type Callback = ::lightning::Nested<<Self as ::lightning::CallbackTuple>::List>;
                    #[inline]
                    fn into_callback(self) -> Self::Callback {
                        ::lightning::Nested(::lightning::CallbackTuple::into_list(self))
                    }
                }
            });
        }
    }
    out
}

/// `Nested<L>`: a list as one callback of an outer list; every hook, the split hook's phase
/// and the state go through to the list's members.
fn nested_impls() -> TokenStream {
    let flags = list_hooks().map(|h| {
        let flag = impl_const(h);
        quote!(const #flag: bool = <L as ::lightning::CallbackList<M>>::#flag;)
    });
    let methods = list_hooks().map(|h| {
        let name = format_ident!("{}", h.name);
        let args = call_args(h);
        let sig = signature(h, &Place::Callback("M"), false, false);
        let body = if h.monitoring_split() {
            let split = split_method(h);
            quote! {
                self.#split(#(#args,)* false)?;
                self.#split(#(#args,)* true)
            }
        } else {
            quote!(<L as ::lightning::CallbackList<M>>::#name(&mut self.0, #(#args),*))
        };
        quote! {
            #[inline(always)]
            #sig { #body }
        }
    });
    let splits = list_hooks().filter(|h| h.monitoring_split()).map(|h| {
        let name = format_ident!("{}", h.name);
        let split = split_method(h);
        let args = call_args(h);
        quote! {
            #[inline(always)]
            fn #split(&mut self, trainer: &mut ::lightning::TrainerState, module: &mut M, monitoring: bool) -> ::lightning::Result<()> {
                <L as ::lightning::CallbackList<M>>::#name(&mut self.0, #(#args,)* monitoring)
            }
        }
    });
    quote! {
        impl<L> ::lightning::IsCallback for ::lightning::Nested<L> {
            type Callback = Self;
            #[inline(always)]
            fn into_callback(self) -> Self { self }
        }
        impl<M: ::lightning::LightningModule, L: ::lightning::CallbackList<M>> ::lightning::Callback<M> for ::lightning::Nested<L> {
            /// Unused: each member saves its state under its own key.
            const STATE_KEY: &'static str = "";
            #(#flags)*
            #(#methods)*
            #(#splits)*
            fn __collect_state(&mut self, trainer: &mut ::lightning::TrainerState, module: &mut M,
                out: &mut ::std::vec::Vec<(&'static str, ::lightning::serde_json::Value)>) -> ::lightning::Result<()> {
                <L as ::lightning::CallbackList<M>>::collect_state(&mut self.0, trainer, module, out)
            }
            fn __restore_state(&mut self, trainer: &mut ::lightning::TrainerState, module: &mut M,
                states: &::std::collections::BTreeMap<::std::string::String, ::lightning::serde_json::Value>) -> ::lightning::Result<()> {
                <L as ::lightning::CallbackList<M>>::restore_state(&mut self.0, trainer, module, states)
            }
            fn __state_keys(out: &mut ::std::vec::Vec<&'static str>) {
                <L as ::lightning::CallbackList<M>>::state_keys(out)
            }
            const __TUNES: bool = <L as ::lightning::CallbackList<M>>::__TUNES;
            fn __tune<X: ::lightning::tuner::TuneFit<M>>(&mut self, fit: &mut X) -> ::lightning::Result<()> {
                <L as ::lightning::CallbackList<M>>::__tune(&mut self.0, fit)
            }
        }
    }
}

fn chain_and_option_impls() -> TokenStream {
    let mut out = TokenStream::new();
    let chain = list_body(&[
        Member { expr: quote!(&mut *self.0), ty: quote!(A), single: false },
        Member { expr: quote!(&mut *self.1), ty: quote!(B), single: false },
    ]);
    out.extend(quote! {
        impl<'a, M: ::lightning::LightningModule, A: ::lightning::CallbackList<M>, B: ::lightning::CallbackList<M>>
            ::lightning::CallbackList<M> for ::lightning::Chain<'a, A, B> {
            #chain
            const __PROFILED: bool =
                <A as ::lightning::CallbackList<M>>::__PROFILED || <B as ::lightning::CallbackList<M>>::__PROFILED;
            #[inline(always)]
            fn __profile(&mut self, action: &'static str, start: bool) {
                if <A as ::lightning::CallbackList<M>>::__PROFILED {
                    self.0.__profile(action, start);
                }
                if <B as ::lightning::CallbackList<M>>::__PROFILED {
                    self.1.__profile(action, start);
                }
            }
        }
        impl<'a, A: ::lightning::CallbackTuple<List = A>, B: ::lightning::CallbackTuple<List = B>>
            ::lightning::CallbackTuple for ::lightning::Chain<'a, A, B> {
            type List = Self;
            #[inline]
            fn into_list(self) -> Self { self }
        }
        impl<L: ::lightning::CallbackTuple<List = L>> ::lightning::CallbackTuple for ::core::option::Option<L> {
            type List = Self;
            #[inline]
            fn into_list(self) -> Self { self }
        }
    });
    out.extend(option_impl());
    out
}

/// `Option<L>`: members are reached through `if let`, so built by hand from the same parts.
fn option_impl() -> TokenStream {
    let mut out = TokenStream::new();
    let opt_flags = {
        let items = list_hooks().map(|h| {
            let flag = impl_const(h);
            quote!(const #flag: bool = <L as ::lightning::CallbackList<M>>::#flag;)
        });
        quote!(#(#items)*)
    };
    let opt_methods = list_hooks().map(|h| {
        let name = format_ident!("{}", h.name);
        let mut args: Vec<TokenStream> = Vec::new();
        if h.trainer {
            args.push(quote!(trainer));
        }
        args.push(quote!(module));
        args.extend(h.args.iter().map(|a| {
            let n = format_ident!("{}", a.name);
            quote!(#n)
        }));
        if h.monitoring_split() {
            args.push(quote!(__monitoring));
        }
        let sig = signature(h, &Place::Callback("M"), false, true);
        let none = if h.maps_batch {
            quote!(::core::result::Result::Ok(batch))
        } else {
            quote!(::core::result::Result::Ok(()))
        };
        quote! {
            #[inline(always)]
            #sig {
                match self {
                    ::core::option::Option::Some(l) => <L as ::lightning::CallbackList<M>>::#name(l, #(#args),*),
                    ::core::option::Option::None => #none,
                }
            }
        }
    });
    out.extend(quote! {
        impl<M: ::lightning::LightningModule, L: ::lightning::CallbackList<M>> ::lightning::CallbackList<M> for ::core::option::Option<L> {
            #opt_flags
            fn collect_state(&mut self, trainer: &mut ::lightning::TrainerState, module: &mut M,
                out: &mut ::std::vec::Vec<(&'static str, ::lightning::serde_json::Value)>) -> ::lightning::Result<()> {
                match self { ::core::option::Option::Some(l) => l.collect_state(trainer, module, out), ::core::option::Option::None => ::core::result::Result::Ok(()) }
            }
            fn restore_state(&mut self, trainer: &mut ::lightning::TrainerState, module: &mut M,
                states: &::std::collections::BTreeMap<::std::string::String, ::lightning::serde_json::Value>) -> ::lightning::Result<()> {
                match self { ::core::option::Option::Some(l) => l.restore_state(trainer, module, states), ::core::option::Option::None => ::core::result::Result::Ok(()) }
            }
            fn state_keys(out: &mut ::std::vec::Vec<&'static str>) { <L as ::lightning::CallbackList<M>>::state_keys(out) }
            const __TUNES: bool = <L as ::lightning::CallbackList<M>>::__TUNES;
            fn __tune<X: ::lightning::tuner::TuneFit<M>>(&mut self, fit: &mut X) -> ::lightning::Result<()> {
                match self { ::core::option::Option::Some(l) => l.__tune(fit), ::core::option::Option::None => ::core::result::Result::Ok(()) }
            }
            #(#opt_methods)*
        }
    });
    out
}
