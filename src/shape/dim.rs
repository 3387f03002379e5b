//! Dimensions: known numbers, symbols, or unknown; and the arithmetic shape inference does on them.
//!
//! Symbolic dimensions are strings in one normal form ([`super::expr`]: `floor((height+3)/4)`,
//! `19*h*w`), so that two values that are equal by the usual floor-division identities compare
//! equal whatever road they came by, which is what broadcasting, matmul and the fusion rules'
//! shape checks need. Expressions that form cannot hold stay opaque strings.

use std::fmt;

/// One dimension of a shape, or one element of a shape-like int64 value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    /// A named size: a graph input's `dim_param`, or an expression over such names.
    Sym(String),
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

impl From<i64> for Dim {
    fn from(v: i64) -> Self {
        Dim::Known(v)
    }
}

impl Dim {
    /// The dimension an expression over named sizes stands for: in normal form (a number when it
    /// folds to one), or the string itself when it is not an expression we can rewrite.
    pub fn symbolic(s: String) -> Dim {
        super::expr::normalize(&s).unwrap_or(Dim::Sym(s))
    }

    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            _ => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Dim::Known(_))
    }

    /// This dimension as an operand of a larger expression.
    fn atom(&self) -> Option<String> {
        match self {
            Dim::Known(v) if *v < 0 => Some(format!("({v})")),
            Dim::Known(v) => Some(v.to_string()),
            Dim::Sym(s) if s.chars().all(|c| c.is_alphanumeric() || c == '_') => Some(s.clone()),
            Dim::Sym(s) => Some(format!("({s})")),
            Dim::Unknown => None,
        }
    }

    pub fn add(&self, o: &Dim) -> Dim {
        match (self, o) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a.wrapping_add(*b)),
            (x, Dim::Known(0)) | (Dim::Known(0), x) => x.clone(),
            (x, Dim::Known(b)) if *b < 0 => sym(x, o, |a, _| format!("{a}-{}", b.unsigned_abs())),
            _ => sym(self, o, |a, b| format!("{a}+{b}")),
        }
    }

    pub fn sub(&self, o: &Dim) -> Dim {
        match (self, o) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a.wrapping_sub(*b)),
            (x, Dim::Known(0)) => x.clone(),
            (Dim::Sym(a), Dim::Sym(b)) if a == b => Dim::Known(0),
            _ => sym(self, o, |a, b| format!("{a}-{b}")),
        }
    }

    pub fn mul(&self, o: &Dim) -> Dim {
        match (self, o) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a.wrapping_mul(*b)),
            (_, Dim::Known(0)) | (Dim::Known(0), _) => Dim::Known(0),
            (x, Dim::Known(1)) | (Dim::Known(1), x) => x.clone(),
            _ => match Product::of(&[self.clone(), o.clone()]) {
                Some(p) => p.to_dim(),
                None => Dim::Unknown,
            },
        }
    }

    /// ONNX integer Div: truncates toward zero. `None` for a known zero divisor.
    pub fn div_trunc(&self, o: &Dim) -> Option<Dim> {
        Some(match (self, o) {
            (_, Dim::Known(0)) => return None,
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a.wrapping_div(*b)),
            (x, Dim::Known(1)) => x.clone(),
            (Dim::Sym(a), Dim::Sym(b)) if a == b => Dim::Known(1),
            _ => sym(self, o, |a, b| format!("{a}/{b}")),
        })
    }

    /// Floor division by a positive constant, as in the convolution and pooling size formulas.
    pub fn div_floor(&self, d: i64) -> Dim {
        match self {
            _ if d == 1 => self.clone(),
            Dim::Known(a) => Dim::Known(a.div_euclid(d)),
            _ => sym(self, &Dim::Known(d), |a, b| format!("floor({a}/{b})")),
        }
    }
}

/// A symbolic result in normal form, or Unknown if either operand is.
fn sym(a: &Dim, b: &Dim, f: impl Fn(&str, &str) -> String) -> Dim {
    match (a.atom(), b.atom()) {
        (Some(x), Some(y)) => Dim::symbolic(f(&x, &y)),
        _ => Dim::Unknown,
    }
}

/// The two dimensions must be equal (a Concat's other axes, a MatMul's K): the better known of the
/// two, or `Err` when two known values differ.
pub fn unify(a: &Dim, b: &Dim) -> Result<Dim, String> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x != y => Err(format!("dimensions {x} and {y} differ")),
        (Dim::Known(_), _) => Ok(a.clone()),
        (_, Dim::Known(_)) => Ok(b.clone()),
        (Dim::Sym(_), _) => Ok(a.clone()),
        _ => Ok(b.clone()),
    }
}

/// Numpy broadcasting of one dimension pair.
pub fn broadcast(a: &Dim, b: &Dim) -> Result<Dim, String> {
    Ok(match (a, b) {
        (Dim::Known(1), x) | (x, Dim::Known(1)) => x.clone(),
        (Dim::Known(x), Dim::Known(y)) if x != y => {
            return Err(format!("dimensions {x} and {y} do not broadcast"))
        }
        (Dim::Known(_), _) => a.clone(),
        (_, Dim::Known(_)) => b.clone(),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => a.clone(),
        // Either may be 1 at run time: the result is not known.
        _ => Dim::Unknown,
    })
}

/// Numpy broadcasting of whole shapes.
pub fn broadcast_shapes(shapes: &[&[Dim]]) -> Result<Vec<Dim>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![Dim::Known(1); rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, d) in s.iter().enumerate() {
            out[off + i] = broadcast(&out[off + i], d)
                .map_err(|e| format!("shapes {} do not broadcast: {e}", show_all(shapes)))?;
        }
    }
    Ok(out)
}

/// A product of dimensions as a known factor and a sorted list of symbolic factors; what Reshape's
/// -1, Flatten and Size compute with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub known: i64,
    pub syms: Vec<String>,
}

impl Product {
    /// `None` when a dimension is unknown.
    pub fn of(dims: &[Dim]) -> Option<Product> {
        let mut p = Product {
            known: 1,
            syms: Vec::new(),
        };
        for d in dims {
            match d {
                Dim::Known(v) => p.known = p.known.checked_mul(*v)?,
                Dim::Sym(s) => {
                    let (k, syms) = split_product(s);
                    p.known = p.known.checked_mul(k)?;
                    p.syms.extend(syms);
                }
                Dim::Unknown => return None,
            }
        }
        p.syms.sort();
        Some(p)
    }

    pub fn to_dim(&self) -> Dim {
        if self.known == 0 {
            return Dim::Known(0);
        }
        if self.syms.is_empty() {
            return Dim::Known(self.known);
        }
        if self.known == 1 && self.syms.len() == 1 {
            return Dim::Sym(self.syms[0].clone());
        }
        let mut parts: Vec<String> = Vec::new();
        if self.known != 1 {
            parts.push(self.known.to_string());
        }
        parts.extend(
            self.syms
                .iter()
                .map(|s| Dim::Sym(s.clone()).atom().expect("symbolic")),
        );
        Dim::symbolic(parts.join("*"))
    }

    /// `self / other`, when it is a whole product: other's symbols are among ours and its known
    /// factor divides ours.
    pub fn divide(&self, other: &Product) -> Option<Product> {
        if other.known == 0 || self.known % other.known != 0 {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let at = syms.iter().position(|x| x == s)?;
            syms.remove(at);
        }
        Some(Product {
            known: self.known / other.known,
            syms,
        })
    }
}

/// The factors of a symbolic product this module wrote (`19*h*(w-1)`), so that products of products
/// stay canonical: its known factor and its symbolic ones. Anything else is one opaque factor.
fn split_product(s: &str) -> (i64, Vec<String>) {
    let mut depth = 0i32;
    let mut parts = vec![String::new()];
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '*' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("non-empty").push(c);
    }
    let opaque = (1, vec![s.to_string()]);
    if parts.len() == 1 {
        return opaque;
    }
    let mut known = 1i64;
    let mut syms = Vec::new();
    for p in parts {
        if let Ok(v) = p.parse::<i64>() {
            known = match known.checked_mul(v) {
                Some(k) => k,
                None => return opaque,
            };
        } else if let Some(inner) = wrapped(&p) {
            syms.push(inner.to_string());
        } else if (!p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
            || p.strip_prefix("floor")
                .is_some_and(|rest| wrapped(rest).is_some())
        {
            syms.push(p);
        } else {
            return opaque;
        }
    }
    (known, syms)
}

/// The inside of `(...)` when the first parenthesis closes at the very end.
fn wrapped(p: &str) -> Option<&str> {
    if !p.starts_with('(') || !p.ends_with(')') {
        return None;
    }
    let mut depth = 0;
    for (i, c) in p.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && i != p.len() - 1 {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some(&p[1..p.len() - 1])
}

/// `[1, batch, ?]`, for messages.
pub fn show(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(", "))
}

fn show_all(shapes: &[&[Dim]]) -> String {
    shapes
        .iter()
        .map(|s| show(s))
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Dim {
        Dim::Sym(x.into())
    }

    #[test]
    fn arithmetic_simplifies_identities_only() {
        assert_eq!(Dim::Known(3).add(&Dim::Known(4)), Dim::Known(7));
        assert_eq!(s("h").add(&Dim::Known(0)), s("h"));
        assert_eq!(s("h").add(&Dim::Known(-1)), s("h-1"));
        assert_eq!(s("h").add(&Dim::Known(1)).div_floor(2), s("floor((h+1)/2)"));
        assert_eq!(s("h").mul(&Dim::Known(1)), s("h"));
        assert_eq!(s("h").sub(&s("h")), Dim::Known(0));
        assert_eq!(s("h").add(&Dim::Unknown), Dim::Unknown);
        assert_eq!(
            Dim::Known(-7).div_trunc(&Dim::Known(2)),
            Some(Dim::Known(-3))
        );
        assert_eq!(Dim::Known(-7).div_floor(2), Dim::Known(-4));
        assert_eq!(s("h").div_trunc(&Dim::Known(0)), None);
    }

    #[test]
    fn products_are_canonical() {
        let a = Dim::Known(19).mul(&s("w")).mul(&s("h"));
        let b = s("h").mul(&Dim::Known(19)).mul(&s("w"));
        assert_eq!(a, b);
        assert_eq!(a, s("19*h*w"));
        let p = Product::of(&[s("batch"), Dim::Known(19), s("floor((h+1)/2)")]).unwrap();
        let q = Product::of(&[s("batch"), Dim::Known(19)]).unwrap();
        assert_eq!(p.divide(&q).unwrap().to_dim(), s("floor((h+1)/2)"));
        assert!(q.divide(&p).is_none());
        assert!(Product::of(&[Dim::Unknown]).is_none());
        // Products of products, with compound factors, stay canonical.
        let c = s("floor((h+1)/2)").mul(&Dim::Known(3));
        assert_eq!(c, s("3*floor((h+1)/2)"));
        assert_eq!(c.mul(&Dim::Known(2)), s("6*floor((h+1)/2)"));
        assert_eq!(
            Product::of(&[s("(a)+(b)")]).unwrap().syms,
            vec!["(a)+(b)".to_string()]
        );
    }

    #[test]
    fn broadcasting_and_unification() {
        assert_eq!(broadcast(&Dim::Known(1), &s("n")).unwrap(), s("n"));
        assert_eq!(broadcast(&Dim::Known(3), &s("n")).unwrap(), Dim::Known(3));
        assert_eq!(broadcast(&s("a"), &s("b")).unwrap(), Dim::Unknown);
        assert_eq!(broadcast(&s("a"), &s("a")).unwrap(), s("a"));
        assert!(broadcast(&Dim::Known(2), &Dim::Known(3)).is_err());
        assert_eq!(unify(&Dim::Unknown, &s("a")).unwrap(), s("a"));
        assert_eq!(unify(&s("a"), &Dim::Known(4)).unwrap(), Dim::Known(4));
        assert!(unify(&Dim::Known(4), &Dim::Known(5)).is_err());
        let out = broadcast_shapes(&[&[Dim::Known(2), Dim::Known(1)], &[s("n")]]).unwrap();
        assert_eq!(out, vec![Dim::Known(2), s("n")]);
    }
}
