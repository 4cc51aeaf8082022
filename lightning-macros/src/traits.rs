//! Generates the runtime's hook traits and callback-list impls from the catalogue.
//! Called once each, from `lightning-runtime`, through hidden function-like macros.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::catalogue::{Hook, HOOKS};
use crate::expand::{impl_const, signature};
use crate::types::Place;

/// Hooks a callback list dispatches generically (state is collected separately).
fn list_hooks() -> impl Iterator<Item = &'static Hook> {
    HOOKS.iter().filter(|h| h.side.callback() && !matches!(h.name, "state_dict" | "load_state_dict"))
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
    side_items(false)
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

fn dispatch(h: &Hook, members: &[Member]) -> TokenStream {
    let name = format_ident!("{}", h.name);
    let flag = impl_const(h);
    let mut args: Vec<TokenStream> = Vec::new();
    if h.trainer {
        args.push(quote!(trainer));
    }
    args.push(quote!(module));
    args.extend(h.args.iter().map(|a| {
        let n = format_ident!("{}", a.name);
        quote!(#n)
    }));
    let returns_batch = h.callback_ret == "$Batch";
    let calls = members.iter().map(|m| {
        let (expr, ty) = (&m.expr, &m.ty);
        let (path, cond, extra) = if m.single {
            let monitor =
                h.monitoring_split.then(|| quote!(&& <#ty as ::lightning::Callback<M>>::MONITORING == __monitoring));
            (
                quote!(<#ty as ::lightning::Callback<M>>),
                quote!(<#ty as ::lightning::Callback<M>>::#flag #monitor),
                quote!(),
            )
        } else {
            let extra = h.monitoring_split.then(|| quote!(, __monitoring));
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
            quote! {
                if <#ty as ::lightning::Callback<M>>::IMPL_STATE_DICT {
                    let state = <#ty as ::lightning::Callback<M>>::state_dict(#e, trainer, module)?;
                    out.push((<#ty as ::lightning::Callback<M>>::STATE_KEY, state));
                }
            }
        } else {
            quote!(<#ty as ::lightning::CallbackList<M>>::collect_state(#e, trainer, module, out)?;)
        }
    });
    let restore = members.iter().map(|m| {
        let (e, ty) = (&m.expr, &m.ty);
        if m.single {
            quote! {
                if <#ty as ::lightning::Callback<M>>::IMPL_LOAD_STATE_DICT {
                    if let ::core::option::Option::Some(state) = states.get(<#ty as ::lightning::Callback<M>>::STATE_KEY) {
                        <#ty as ::lightning::Callback<M>>::load_state_dict(#e, trainer, module, state)?;
                    }
                }
            }
        } else {
            quote!(<#ty as ::lightning::CallbackList<M>>::restore_state(#e, trainer, module, states)?;)
        }
    });
    let keys = members.iter().map(|m| {
        let ty = &m.ty;
        if m.single {
            quote!(if <#ty as ::lightning::Callback<M>>::IMPL_STATE_DICT { out.push(<#ty as ::lightning::Callback<M>>::STATE_KEY); })
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
    let methods = list_hooks().map(|h| dispatch(h, members));
    quote!(#flags #state #(#methods)*)
}

/// `CallbackList` impls: tuples of callbacks up to 12, `Chain` of two lists, `Option` of a list.
pub fn list_impls() -> TokenStream {
    let mut out = TokenStream::new();
    for n in 0..=12usize {
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
        out.extend(quote! {
            impl<M: ::lightning::LightningModule #(, #tys: ::lightning::Callback<M>)*> ::lightning::CallbackList<M> for #tuple {
                #body
            }
        });
    }
    let chain = list_body(&[
        Member { expr: quote!(&mut *self.0), ty: quote!(A), single: false },
        Member { expr: quote!(&mut *self.1), ty: quote!(B), single: false },
    ]);
    out.extend(quote! {
        impl<'a, M: ::lightning::LightningModule, A: ::lightning::CallbackList<M>, B: ::lightning::CallbackList<M>>
            ::lightning::CallbackList<M> for ::lightning::Chain<'a, A, B> { #chain }
    });
    // Option<L>: members are reached through `if let`, so build it by hand from the same parts.
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
        if h.monitoring_split {
            args.push(quote!(__monitoring));
        }
        let sig = signature(h, &Place::Callback("M"), false, true);
        let none = if h.callback_ret == "$Batch" {
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
            #(#opt_methods)*
        }
    });
    out
}
