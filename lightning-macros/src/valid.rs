//! Validation: decides which methods are hooks and checks them against the catalogue.
//! Every problem is recorded, none stops the others from being found.

use proc_macro2::Span;
use syn::{spanned::Spanned, FnArg, Ident, ImplItemFn, Pat, PatType, ReturnType, Signature, Type};

use crate::ast::{ImplInput, Kind, Marker};
use crate::catalogue::{self, Hook};
use crate::errors::Errors;
use crate::types;

/// A user method bound to a hook, ready to expand.
pub struct BoundHook<'a> {
    pub hook: &'static Hook,
    pub method: &'a Ident,
    /// The user's parameters, in the user's order: (catalogue name, user's type).
    pub params: Vec<(&'static str, &'a Type)>,
    /// The user's return type, if any.
    pub ret: Option<&'a Type>,
    /// The signature has an error that does not change the hook's types (an unknown
    /// argument, `async`, ...): the hook is bound, and its body is never compiled to run.
    pub broken: bool,
}

/// The names a hook method may take, beyond the hook's documented arguments.
fn extra_args(hook: &Hook, kind: Kind) -> Vec<&'static str> {
    let mut v = Vec::new();
    if hook.trainer {
        v.push("trainer");
    }
    if kind == Kind::Callback {
        v.push("module");
    }
    v
}

fn available(hook: &Hook, kind: Kind) -> Vec<&'static str> {
    let mut v = extra_args(hook, kind);
    v.extend(hook.args.iter().map(|a| a.name));
    v
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

pub fn validate<'a>(input: &'a ImplInput, kind: Kind, errors: &mut Errors) -> Vec<BoundHook<'a>> {
    let on_module = kind == Kind::Module;
    let mut bound: Vec<BoundHook<'a>> = Vec::new();
    let mut seen: Vec<(&'static str, Span)> = Vec::new();
    for m in &input.methods {
        let f = input.method(m);
        let fn_name = f.sig.ident.to_string();
        let (hook_name, span) = match &m.marker {
            Marker::NotHook => continue,
            Marker::Hook { name: Some(n), .. } => (n.to_string(), n.span()),
            Marker::Hook { name: None, .. } => (fn_name.clone(), f.sig.ident.span()),
            Marker::None => {
                if catalogue::find(&fn_name).is_some() {
                    (fn_name.clone(), f.sig.ident.span())
                } else {
                    check_unmarked(&fn_name, f.sig.ident.span(), on_module, errors);
                    continue;
                }
            }
        };
        let Some(hook) = resolve_name(&hook_name, span, kind, errors) else { continue };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == hook.name) {
            errors.push(span, format!("duplicate hook `{}`: another method already implements it", hook.name));
            errors.push(*first, format!("`{}` first implemented here", hook.name));
            continue;
        }
        seen.push((hook.name, span));
        if let Some(b) = check_signature(f, hook, kind, errors) {
            bound.push(b);
        }
    }
    bound
}

/// An unmarked method that is not a hook: fine, unless it looks like a mistyped one.
fn check_unmarked(name: &str, span: Span, on_module: bool, errors: &mut Errors) {
    let fix = "if it is not meant to be a hook, mark it `#[not_hook]`";
    if let Some((_, instead, why)) = catalogue::removed(name) {
        errors.push(span, format!("`{name}` {why}: use `{instead}` instead ({fix})"));
    } else if let Some(s) = catalogue::suggest(name, on_module) {
        errors.push(span, format!("`{name}` is not a hook: did you mean `{s}`? ({fix})"));
    } else if name.starts_with("on_") {
        errors.push(span, format!("`{name}` starts with `on_` but is not a Lightning hook; {fix} or rename it"));
    }
}

/// Checks a hook name (given by `#[hook]` or by the method's name) for this side.
fn resolve_name(name: &str, span: Span, kind: Kind, errors: &mut Errors) -> Option<&'static Hook> {
    let on_module = kind == Kind::Module;
    let Some(hook) = catalogue::find(name) else {
        if let Some((_, instead, why)) = catalogue::removed(name) {
            errors.push(span, format!("`{name}` {why}: use `{instead}` instead"));
        } else if let Some(s) = catalogue::suggest(name, on_module) {
            errors.push(span, format!("unknown hook `{name}`: did you mean `{s}`?"));
        } else {
            errors.push(
                span,
                format!("unknown hook `{name}`; the hooks are listed in the `LightningModule` and `Callback` docs"),
            );
        }
        return None;
    };
    match (on_module, hook.side.module(), hook.side.callback()) {
        (true, false, _) => {
            errors.push(span, format!("`{name}` is a callback-only hook: a LightningModule cannot implement it; implement it in a `#[callback]` impl"));
            None
        }
        (false, _, false) => {
            errors.push(span, format!("`{name}` is a LightningModule hook: a callback cannot implement it; implement it in the `#[lightning_module]` impl"));
            None
        }
        _ => Some(hook),
    }
}

/// Records a signature's errors and whether any was found (the hook is then `broken`).
struct SigErrors<'e> {
    errors: &'e mut Errors,
    ok: bool,
}

impl SigErrors<'_> {
    fn bad(&mut self, span: Span, msg: String) {
        self.errors.push(span, msg);
        self.ok = false;
    }
}

/// Checks a hook method's whole signature and binds it: `None` when its types are unusable.
fn check_signature<'a>(
    f: &'a ImplItemFn,
    hook: &'static Hook,
    kind: Kind,
    errors: &mut Errors,
) -> Option<BoundHook<'a>> {
    let sig = &f.sig;
    let mut e = SigErrors { errors, ok: true };
    check_qualifiers(sig, hook, &mut e);
    // errors after which the user's types cannot be used for the module's associated types
    let mut types_ok = check_generics(sig, hook, &mut e);
    let params = check_params(sig, hook, kind, &mut e);
    let ret = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, t) => Some(&**t),
    };
    types_ok &= check_return(ret, hook, &mut e);
    types_ok.then_some(BoundHook { hook, method: &sig.ident, params, ret, broken: !e.ok })
}

/// Rejects `async`, `const`, `unsafe` and `extern`: the trainer calls hooks as plain methods.
fn check_qualifiers(sig: &Signature, hook: &Hook, e: &mut SigErrors) {
    if let Some(a) = &sig.asyncness {
        e.bad(a.span(), format!("hook `{}` cannot be `async`: the trainer calls hooks synchronously", hook.name));
    }
    if let Some(c) = &sig.constness {
        e.bad(c.span(), format!("hook `{}` cannot be a `const fn`", hook.name));
    }
    if let Some(u) = &sig.unsafety {
        e.bad(u.span(), format!("hook `{}` cannot be `unsafe`", hook.name));
    }
    if let Some(abi) = &sig.abi {
        e.bad(abi.span(), format!("hook `{}` cannot have an `extern` ABI", hook.name));
    }
}

/// Rejects generic hooks; false when the user's types are then unusable.
fn check_generics(sig: &Signature, hook: &Hook, e: &mut SigErrors) -> bool {
    if sig.generics.params.is_empty() {
        return true;
    }
    e.bad(
        sig.generics.span(),
        format!("hook `{}` cannot be generic: the trainer calls it with fixed types (take concrete types, or `impl Trait` where the hook offers one)", hook.name),
    );
    false
}

/// Binds the parameters by name and checks the receiver: the bound (catalogue name, type) pairs.
fn check_params<'a>(sig: &'a Signature, hook: &Hook, kind: Kind, e: &mut SigErrors) -> Vec<(&'static str, &'a Type)> {
    let avail = available(hook, kind);
    let mut params = Vec::new();
    let mut receiver = false;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                receiver = true;
                if r.reference.is_none() {
                    e.bad(
                        r.span(),
                        format!("hook `{}` must take `&mut self` or `&self`, not `self` by value", hook.name),
                    );
                }
            }
            FnArg::Typed(pt) => {
                if let Some(p) = bind_param(pt, hook, &avail, e) {
                    params.push(p);
                }
            }
        }
    }
    if !receiver {
        e.bad(sig.ident.span(), format!("hook `{}` must take `&mut self` or `&self`", hook.name));
    }
    params
}

/// Matches one typed parameter to an available argument by its name (a leading `_` ignored).
fn bind_param<'a>(
    pt: &'a PatType,
    hook: &Hook,
    avail: &[&'static str],
    e: &mut SigErrors,
) -> Option<(&'static str, &'a Type)> {
    let Pat::Ident(pi) = &*pt.pat else {
        e.bad(
            pt.pat.span(),
            format!(
                "hook parameters are matched by name: write `name: Type` (available for `{}`: {})",
                hook.name,
                list(avail)
            ),
        );
        return None;
    };
    let given = pi.ident.to_string();
    let wanted = given.trim_start_matches('_');
    if let Some(n) = avail.iter().find(|n| **n == wanted) {
        return Some((*n, &*pt.ty));
    }
    let (h, all) = (hook.name, list(avail));
    let message = match closest_arg(wanted, avail) {
        Some(s) => format!("hook `{h}` has no argument `{given}`: did you mean `{s}`? (available: {all})"),
        None => format!("hook `{h}` has no argument `{given}`; available: {all}"),
    };
    e.bad(pi.ident.span(), message);
    None
}

/// Rejects an `impl Trait` return (inside `Result` too); false when the types are then unusable.
fn check_return(ret: Option<&Type>, hook: &Hook, e: &mut SigErrors) -> bool {
    let Some(t) = ret else { return true };
    let inner = types::result_ok(t).unwrap_or(t);
    if !matches!(inner, Type::ImplTrait(_)) {
        return true;
    }
    e.bad(inner.span(), format!("hook `{}` must return a named type: the trainer stores it", hook.name));
    false
}

/// The available argument closest to an unknown one, if close enough to be a likely typo
/// (`batch_index` → `batch_idx`, `output` → `outputs`).
fn closest_arg<'a>(given: &str, avail: &[&'a str]) -> Option<&'a str> {
    avail
        .iter()
        .map(|a| (*a, strsim::jaro_winkler(given, a), strsim::damerau_levenshtein(given, a)))
        .filter(|&(_, jw, dl)| dl <= 2 || jw >= 0.9)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(a, _, _)| a)
}
