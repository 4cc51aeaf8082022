//! Expansion: turns validated hooks into `LightningModule` / `Callback` impls that call
//! the user's methods. The loops live in the runtime; nothing here runs per step
//! except the one call each generated method makes.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{spanned::Spanned, Fields, Ident, ItemImpl, ItemStruct, Type};

use crate::catalogue::Hook;
use crate::errors::Errors;
use crate::types::{self, Place};
use crate::valid::BoundHook;

pub fn impl_const(hook: &Hook) -> Ident {
    format_ident!("IMPL_{}", hook.name.to_uppercase())
}

/// The generated method's signature (shared with the runtime's traits).
pub fn signature(hook: &Hook, place: &Place, module_side: bool, list_extra: bool) -> TokenStream {
    let name = format_ident!("{}", hook.name);
    let mut params = Vec::new();
    if hook.trainer {
        params.push(quote!(trainer: &mut ::lightning::TrainerState));
    }
    if let Place::Callback(m) = place {
        let m = types::parse(m);
        params.push(quote!(module: &mut #m));
    }
    for a in hook.args {
        let n = format_ident!("{}", a.name);
        let t = types::parse(&types::resolve(a.ty, place));
        params.push(quote!(#n: #t));
    }
    if list_extra && hook.monitoring_split() {
        params.push(quote!(__monitoring: bool));
    }
    let ret = types::parse(&types::resolve(if module_side { hook.module_ret } else { hook.callback_ret }, place));
    quote!(fn #name(&mut self, #(#params),*) -> ::lightning::Result<#ret>)
}

/// The body that calls the user's method with the arguments it asked for, by name.
fn call_user(b: &BoundHook, self_ty: &Type) -> TokenStream {
    let method = b.method;
    let hook = b.hook.name;
    if b.broken {
        // Only emitted beside the signature's compile error: the hook stays bound, so the
        // error is not followed by "no `training_step` hook" at every `fit` call.
        return quote!(::core::unreachable!());
    }
    let args = b.params.iter().map(|(name, ty)| {
        let id = Ident::new(name, ty.span());
        let checked = b.hook.args.iter().find(|a| a.name == *name).filter(|a| crate::traits::checked_arg(a.ty));
        match checked {
            Some(_) if !types::mentions_impl(ty) => {
                let t = crate::traits::arg_name(hook, name);
                quote_spanned!(ty.span()=> ::lightning::__private::hook_args::#t::<#ty>::pass(#id))
            }
            _ => quote_spanned!(ty.span()=> #id),
        }
    });
    // the dispatcher records the running hook around this call
    let call = quote!(<#self_ty>::#method(self, #(#args),*));
    let ret_span = b.ret.map(|t| t.span()).unwrap_or_else(|| b.method.span());
    let into = quote_spanned!(ret_span=> ::core::result::Result::Ok(::lightning::__private::HookReturn::into_hook_return(__value)));
    match b.ret {
        Some(t) if types::result_ok(t).is_some() => quote! {
            let __value = #call.map_err(|e| ::lightning::Error::in_hook(#hook, e))?;
            #into
        },
        _ => quote! {
            let __value = #call;
            #into
        },
    }
}

fn methods(bound: &[BoundHook], self_ty: &Type, place: &Place, module_side: bool) -> TokenStream {
    let items = bound.iter().map(|b| {
        let sig = signature(b.hook, place, module_side, false);
        let body = call_user(b, self_ty);
        let flag = impl_const(b.hook);
        quote! {
            const #flag: bool = true;
            #[inline]
            #[allow(unused_variables, clippy::unit_arg, clippy::useless_conversion)]
            #sig { #body }
        }
    });
    quote!(#(#items)*)
}

/// Options of `#[lightning_module(...)]` on the impl.
#[derive(Default)]
pub struct ModuleArgs {
    pub batch: Option<Type>,
    /// `manual_optimization`: Lightning's `automatic_optimization = False`.
    pub manual: bool,
}

/// Options of `#[callback(...)]`.
#[derive(Default)]
pub struct CallbackArgs {
    pub monitoring: bool,
    pub state_key: Option<syn::LitStr>,
}

fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default(),
        other => quote!(#other).to_string(),
    }
}

fn first_usable<'a>(it: impl Iterator<Item = &'a Type>) -> Option<&'a Type> {
    it.into_iter().find(|t| !types::mentions_self_or_impl(t))
}

/// Whether the module's `configure_optimizers` reads `estimated_stepping_batches`: the
/// trainer then fetches the training loader before calling it, as Lightning does when the
/// property is read there.
fn reads_stepping_estimate(item: &ItemImpl, bound: &[BoundHook]) -> bool {
    fn mentions(ts: TokenStream) -> bool {
        ts.into_iter().any(|t| match t {
            proc_macro2::TokenTree::Ident(i) => i == "estimated_stepping_batches",
            proc_macro2::TokenTree::Group(g) => mentions(g.stream()),
            _ => false,
        })
    }
    // the hook that returns the optimizers
    let Some(b) = bound.iter().find(|b| b.hook.module_ret == "$Optim") else { return false };
    item.items.iter().any(|i| match i {
        syn::ImplItem::Fn(f) => &f.sig.ident == b.method && mentions(quote::ToTokens::to_token_stream(&f.block)),
        _ => false,
    })
}

/// The user's return type (inside `Result`) of the first bound hook, in catalogue order,
/// whose catalogue return type is `ret`: where `#[lightning_module]` reads the module's
/// associated types (`$Optim` from `configure_optimizers`, `$Loader` from the loaders).
fn ret_of<'a>(bound: &'a [BoundHook], ret: &str) -> Option<(&'static Hook, &'a Type)> {
    crate::catalogue::HOOKS.iter().filter(|h| h.module_ret == ret).find_map(|h| {
        let t = bound.iter().find(|b| b.hook.name == h.name)?.ret?;
        Some((h, types::result_ok(t).unwrap_or(t)))
    })
}

/// The user's types of the arguments whose catalogue type is `ty`.
fn params_typed<'a>(bound: &'a [BoundHook], ty: &'a str) -> impl Iterator<Item = &'a Type> + 'a {
    bound.iter().flat_map(move |b| {
        b.params.iter().filter(move |(n, _)| b.hook.args.iter().any(|a| a.name == *n && a.ty == ty)).map(|(_, t)| *t)
    })
}

fn params_named<'a>(bound: &'a [BoundHook], name: &'a str) -> impl Iterator<Item = (&'static Hook, &'a Type)> + 'a {
    bound.iter().flat_map(move |b| b.params.iter().filter(move |(n, _)| *n == name).map(|(_, t)| (b.hook, *t)))
}

/// The batch type, read from the user's hooks (`batch: &T` or a returned batch).
fn infer_batch<'a>(bound: &'a [BoundHook]) -> Option<&'a Type> {
    let from_params = params_named(bound, "batch").map(|(_, t)| types::strip_ref(t));
    let from_returns =
        bound.iter().filter(|b| b.hook.maps_batch).filter_map(|b| b.ret.map(|t| types::result_ok(t).unwrap_or(t)));
    first_usable(from_params.chain(from_returns))
}

/// The fields of a `#[lightning_module]` struct, as `module_struct` needs them.
#[derive(Default)]
struct StructFields {
    /// Fields marked `#[params]`: (access, type's span).
    marked: Vec<(TokenStream, Span)>,
    /// Unmarked fields of type `VarMap`.
    by_type: Vec<(TokenStream, Span)>,
    /// Every field's access (`name` or index).
    all: Vec<TokenStream>,
    /// Fields marked `#[hparams]`.
    hparams: Vec<(TokenStream, Span)>,
    /// (access, type) as strings, for `HasParameters::fields`.
    names_types: Vec<(String, String)>,
}

/// Implements `HasParameters` for a `#[lightning_module]` struct (and strips our field markers).
pub fn module_struct(mut item: ItemStruct, errors: &mut Errors) -> TokenStream {
    let mut fields = scan_fields(&mut item);
    let name = &item.ident;
    let field = params_field(&item, &mut fields, errors);
    let hparams_fn = hyperparameters_fn(&fields.hparams, errors);
    let field_names = fields.names_types.iter().map(|(n, _)| n);
    let field_types = fields.names_types.iter().map(|(_, t)| t);
    let all = &fields.all;
    let (ig, tg, wc) = item.generics.split_for_impl();
    let params_impl = field.map(|(access, span)| {
        let body = quote_spanned!(span=> &self.#access);
        let others = all.iter().filter(|a| a.to_string() != access.to_string());
        quote! {
            impl #ig ::lightning::HasParameters for #name #tg #wc {
                #[inline]
                fn parameters(&self) -> &::lightning::candle_nn::VarMap { #body }
                fn relocate_fields(&mut self, to: &::lightning::Relocation) -> ::lightning::Result<()> {
                    #[allow(unused_imports)]
                    use ::lightning::__private::{ViaNothing as _, ViaRelocate as _};
                    #((&mut ::lightning::__private::Field(&mut self.#others)).relocate_field(to)?;)*
                    ::core::result::Result::Ok(())
                }
                #hparams_fn
                fn fields() -> &'static [(&'static str, &'static str)] {
                    &[#((#field_names, #field_types)),*]
                }
            }
        }
    });
    // Without the field the struct's error is reported; an impl that only panics keeps the
    // module's own impl from adding "not marked as a LightningModule" errors (serde's dummy
    // impls do the same). The program does not compile, so its body never runs.
    let params_impl = params_impl.unwrap_or_else(|| {
        quote! {
            impl #ig ::lightning::HasParameters for #name #tg #wc {
                fn parameters(&self) -> &::lightning::candle_nn::VarMap { ::core::unreachable!() }
                fn relocate_fields(&mut self, _: &::lightning::Relocation) -> ::lightning::Result<()> {
                    ::core::unreachable!()
                }
            }
        }
    });
    quote!(#item #params_impl)
}

/// Reads every field, removing the `#[params]` and `#[hparams]` markers the compiler must not see.
fn scan_fields(item: &mut ItemStruct) -> StructFields {
    let mut out = StructFields::default();
    for (i, f) in item.fields.iter_mut().enumerate() {
        let before_h = f.attrs.len();
        f.attrs.retain(|a| !a.path().is_ident("hparams"));
        let is_hparams = f.attrs.len() != before_h;
        let before = f.attrs.len();
        f.attrs.retain(|a| !a.path().is_ident("params"));
        let access = match &f.ident {
            Some(id) => quote!(#id),
            None => {
                let idx = syn::Index::from(i);
                quote!(#idx)
            }
        };
        out.all.push(access.clone());
        let ty = &f.ty;
        out.names_types.push((access.to_string(), quote!(#ty).to_string().replace(' ', "")));
        if is_hparams {
            out.hparams.push((access.clone(), f.ty.span()));
        }
        if f.attrs.len() != before {
            out.marked.push((access, f.ty.span()));
        } else if type_name(&f.ty) == "VarMap" {
            out.by_type.push((access, f.ty.span()));
        }
    }
    out
}

/// The field holding the parameters: the one `#[params]` marks, else the only `VarMap`.
fn params_field(item: &ItemStruct, fields: &mut StructFields, errors: &mut Errors) -> Option<(TokenStream, Span)> {
    let name = &item.ident;
    match (fields.marked.len(), fields.by_type.len()) {
        (1, _) => Some(fields.marked.remove(0)),
        (0, 1) => Some(fields.by_type.remove(0)),
        (0, 0) => {
            let hint = if matches!(item.fields, Fields::Unit) { " (a unit struct has none)" } else { "" };
            errors.push(
                name.span(),
                format!("a `#[lightning_module]` struct needs the `VarMap` that holds its parameters{hint}: add a field `vars: VarMap`, or mark the field that holds it with `#[params]`"),
            );
            None
        }
        (0, _) => {
            errors.push(
                name.span(),
                "several `VarMap` fields: mark the one holding the trained parameters with `#[params]`",
            );
            None
        }
        _ => {
            errors.push(name.span(), "`#[params]` may mark only one field");
            None
        }
    }
}

/// `HasParameters::hyperparameters` from the one `#[hparams]` field, if any.
fn hyperparameters_fn(hparams: &[(TokenStream, Span)], errors: &mut Errors) -> Option<TokenStream> {
    if let Some((_, span)) = hparams.get(1) {
        errors.push(*span, "`#[hparams]` may mark only one field: gather the hyperparameters in one struct");
    }
    hparams.first().map(|(access, span)| {
        let value = quote_spanned!(*span=> ::lightning::serde_json::to_value(&self.#access));
        quote! {
            fn hyperparameters(&self) -> ::lightning::Result<::core::option::Option<::lightning::serde_json::Value>> {
                #value.map(::core::option::Option::Some).map_err(|e| ::lightning::Error::msg(
                    ::std::format!("the `#[hparams]` field does not serialize to JSON: {e}")))
            }
        }
    })
}

/// The module's associated types, read from the user's hooks (or their defaults).
struct AssocTypes {
    batch: TokenStream,
    optim: TokenStream,
    prediction: TokenStream,
    loader: TokenStream,
    callbacks: TokenStream,
}

/// Implements `LightningModule` (and the requirement markers) for a `#[lightning_module]` impl.
pub fn module_impl(item: &ItemImpl, bound: &[BoundHook], args: &ModuleArgs, errors: &mut Errors) -> TokenStream {
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(path.span(), "`#[lightning_module]` goes on the struct and on its inherent impl (`impl MyModel { ... }`), not on a trait impl");
        return quote!();
    }
    let self_ty = &item.self_ty;
    let (ig, _, wc) = item.generics.split_for_impl();
    let AssocTypes { batch, optim, prediction: prediction_ty, loader, callbacks } = assoc_types(bound, args, errors);
    let name = type_name(self_ty);
    let missing = missing_partners(bound, self_ty, &name, errors);
    let automatic = !args.manual;
    if automatic {
        reject_manual_args(bound, errors);
    }
    let methods = methods(bound, self_ty, &Place::Module, true);
    let estimate = reads_stepping_estimate(item, bound).then(|| {
        quote!(
            const ESTIMATE_IN_CONFIGURE_OPTIMIZERS: bool = true;
        )
    });
    let markers = bound.iter().map(|b| b.hook).chain(missing).filter(|h| h.needs.is_some()).map(|h| {
        let marker = crate::requirements::marker(h);
        quote!(impl #ig ::lightning::__private::#marker for #self_ty #wc {})
    });
    quote! {
        impl #ig ::lightning::LightningModule for #self_ty #wc {
            const NAME: &'static str = #name;
            const AUTOMATIC_OPTIMIZATION: bool = #automatic;
            #estimate
            type Batch = #batch;
            type Optim = #optim;
            type Prediction = #prediction_ty;
            type Loader = #loader;
            type Callbacks = #callbacks;
            #methods
        }
        #(#markers)*
    }
}

/// Reads the associated types from the hooks; a stored type that mentions `Self` is an error.
fn assoc_types(bound: &[BoundHook], args: &ModuleArgs, errors: &mut Errors) -> AssocTypes {
    let tensor = quote!(::lightning::candle::Tensor);
    let batch = match args.batch.as_ref().or_else(|| infer_batch(bound)) {
        Some(t) => quote!(#t),
        None => quote!((#tensor, #tensor)),
    };
    let optim = ret_of(bound, "$Optim");
    let prediction = ret_of(bound, "$Prediction");
    let prediction_ty = prediction
        .map(|(_, t)| t)
        .or_else(|| first_usable(params_typed(bound, "&$Prediction").map(types::strip_ref)))
        .map_or_else(|| quote!(()), |t| quote!(#t));
    let loader = ret_of(bound, "$Loader").map_or_else(|| quote!(::lightning::NoLoader<#batch>), |(_, t)| quote!(#t));
    let callbacks = ret_of(bound, "::core::option::Option<$Callbacks>")
        .map(|(_, t)| types::option_inner(t).unwrap_or(t))
        .map_or_else(|| quote!(()), |t| quote!(#t));
    for (hook, t) in [optim, prediction].into_iter().flatten() {
        if types::mentions_self_or_impl(t) {
            errors.push(
                t.span(),
                format!("`{}` must return a named type that does not mention `Self`: the trainer stores it", hook.name),
            );
        }
    }
    let optim = optim.map_or_else(|| quote!(::lightning::NoOptimizer), |(_, t)| quote!(#t));
    AssocTypes { batch, optim, prediction: prediction_ty, loader, callbacks }
}

/// A hook that needs another (`training_step` needs `configure_optimizers`): said once,
/// here, rather than at every entry point's call; the other's marker is then implemented
/// anyway (the hooks returned), so those calls add nothing to this error.
fn missing_partners(bound: &[BoundHook], self_ty: &Type, name: &str, errors: &mut Errors) -> Vec<&'static Hook> {
    let has = |hook: &str| bound.iter().any(|b| b.hook.name == hook);
    bound
        .iter()
        .filter_map(|b| Some((b.hook, b.hook.needs?.with?)))
        .filter(|(_, (with, _))| !has(with))
        .map(|(hook, (with, example))| {
            let other = crate::catalogue::find(with).expect("catalogue: `with` names a hook");
            let entry = other.needs.map_or("", |n| n.entry);
            errors.push(
                self_ty.span(),
                format!(
                    "`{name}` has `{}` but no `{with}`, which `{entry}` needs: add {example} to this impl",
                    hook.name
                ),
            );
            other
        })
        .collect()
}

/// Under automatic optimization a hook's `manual` argument is an error.
fn reject_manual_args(bound: &[BoundHook], errors: &mut Errors) {
    for (_, ty) in params_named(bound, "manual") {
        errors.add(syn::Error::new_spanned(
            ty,
            "`manual` exists only under manual optimization: write `#[lightning_module(manual_optimization)]` on this impl to step the optimizers yourself, or drop the argument and return the loss",
        ));
    }
}

/// Implements `Callback<M>` (and `IsCallback`) for a `#[callback]` impl.
pub fn callback_impl(item: &ItemImpl, bound: &[BoundHook], args: &CallbackArgs, errors: &mut Errors) -> TokenStream {
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(
            path.span(),
            "`#[callback]` goes on the callback's inherent impl (`impl MyCallback { ... }`), not on a trait impl",
        );
        return quote!();
    }
    let self_ty = &item.self_ty;
    let module = first_usable(params_named(bound, "module").map(|(_, t)| types::strip_ref(t)));
    let mut generics = item.generics.clone();
    let m_name = match module {
        Some(t) => quote!(#t).to_string(),
        None => {
            // Generic over the module, with the types the user named pinned by bounds.
            let mut assoc = Vec::new();
            if let Some(b) = infer_batch(bound) {
                assoc.push(quote!(Batch = #b));
            }
            if let Some(p) = first_usable(params_typed(bound, "&$Prediction").map(types::strip_ref)) {
                assoc.push(quote!(Prediction = #p));
            }
            let assoc = (!assoc.is_empty()).then(|| quote!(<#(#assoc),*>));
            generics.params.push(syn::parse_quote!(__M: ::lightning::LightningModule #assoc));
            if let Some(o) = first_usable(params_named(bound, "optimizer").map(|(_, t)| types::strip_ref(t))) {
                generics.make_where_clause().predicates.push(syn::parse_quote!(
                    <__M as ::lightning::LightningModule>::Optim: ::lightning::Optimizers<Optimizer = #o>
                ));
            }
            "__M".to_string()
        }
    };
    let m_ty = types::parse(&m_name);
    let (ig, _, wc) = generics.split_for_impl();
    // whatever the module: `.callbacks(..)` checks it before any module is known
    let (mig, _, mwc) = item.generics.split_for_impl();
    let marker = quote! {
        impl #mig ::lightning::IsCallback for #self_ty #mwc {
            type Callback = Self;
            #[inline(always)]
            fn into_callback(self) -> Self { self }
        }
    };
    let key = args.state_key.as_ref().map_or_else(|| type_name(self_ty), |k| k.value());
    let monitoring = args.monitoring;
    let methods = methods(bound, self_ty, &Place::Callback(&m_name), false);
    quote! {
        impl #ig ::lightning::Callback<#m_ty> for #self_ty #wc {
            const STATE_KEY: &'static str = #key;
            const MONITORING: bool = #monitoring;
            #methods
        }
        #marker
    }
}
