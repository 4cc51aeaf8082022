//! Type helpers: resolving catalogue placeholders and reading user types.

use syn::{GenericArgument, PathArguments, Type};

/// Where catalogue types are resolved.
pub enum Place<'a> {
    /// In `LightningModule` (trait or impl): `Self::Batch`.
    Module,
    /// In `Callback<M>`: `<M as LightningModule>::Batch`, with `M` as given.
    Callback(&'a str),
    /// Over a generic datamodule: `<DM as DataModule>::Batch`, with `DM` as given.
    Data(&'a str),
}

/// Replaces the `$` placeholders of a catalogue type.
pub fn resolve(ty: &str, place: &Place) -> String {
    let m = match place {
        Place::Module => "Self".to_string(),
        Place::Callback(m) => format!("<{m} as ::lightning::LightningModule>"),
        Place::Data(dm) => format!("<{dm} as ::lightning::DataModule>"),
    };
    ty.replace("$Optimizer", &format!("<{m}::Optim as ::lightning::Optimizers>::Optimizer"))
        .replace("$Scheduler", &format!("<{m}::Optim as ::lightning::Optimizers>::Scheduler"))
        .replace("$Optim", &format!("{m}::Optim"))
        .replace("$Batch", &format!("{m}::Batch"))
        .replace("$Prediction", &format!("{m}::Prediction"))
        .replace("$Loader", &format!("{m}::Loader"))
        .replace("$Callbacks", &format!("{m}::Callbacks"))
}

pub fn parse(ty: &str) -> Type {
    syn::parse_str(ty).unwrap_or_else(|e| panic!("catalogue type `{ty}` does not parse: {e}"))
}

/// `Result<T, ..>` (any path ending in `Result`) → `Some(T)`.
pub fn result_ok(ty: &Type) -> Option<&Type> {
    generic_of(ty, "Result")
}

/// `Option<T>` → `Some(T)`.
pub fn option_inner(ty: &Type) -> Option<&Type> {
    generic_of(ty, "Option")
}

fn generic_of<'t>(ty: &'t Type, name: &str) -> Option<&'t Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

/// `&T` / `&mut T` → `T`.
pub fn strip_ref(ty: &Type) -> &Type {
    match ty {
        Type::Reference(r) => &r.elem,
        Type::Paren(p) => strip_ref(&p.elem),
        other => other,
    }
}

/// A type that names `Self` cannot define an associated type of `Self`.
pub fn mentions_self_or_impl(ty: &Type) -> bool {
    mentions(ty, &["Self", "impl"])
}

/// `impl Trait` cannot be written where a type is named in an expression.
pub fn mentions_impl(ty: &Type) -> bool {
    mentions(ty, &["impl"])
}

fn mentions(ty: &Type, words: &[&str]) -> bool {
    let s = quote::quote!(#ty).to_string();
    s.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| words.contains(&w))
}
