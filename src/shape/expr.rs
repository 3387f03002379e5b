//! One normal form for symbolic dimensions, so that equal sizes written differently compare equal.
//!
//! The same size reaches a graph by several roads. After two stride-2 convolutions our inference
//! writes `floor((floor((h+1)/2)+1)/2)`; the exporter computes a Resize's sizes as `1+((h-1)/4)`
//! with Div nodes; torch's dynamo exporter declares `(((h - 1)//4)) + 1` in `value_info`. All three
//! are ⌈h/4⌉, and a fusion rule that compares a Reshape's output with its query (or a broadcast
//! that meets the two) must see one value, not three strings.
//!
//! Here an expression is parsed and rewritten as a polynomial whose atoms are symbols and
//! `floor(P/d)` terms, with integer coefficients, under these rules (integers throughout; symbols
//! are sizes, so at least 1):
//! - `floor((d·Q + R)/d) = Q + floor(R/d)`: multiples of `d` leave the floor, and the constant
//!   left inside is in `0..d`;
//! - `floor((g·X + c)/(g·e)) = floor((X + floor(c/g))/e)`: a common factor of the symbolic
//!   coefficients and `d` cancels;
//! - `floor((floor(P/m) + c)/d) = floor((P + c·m)/(m·d))`: nested floors merge;
//! - ONNX's truncating division is floor division where the dividend is provably never negative
//!   (nondecreasing in every symbol and at least 0 when they are all 1).
//!
//! Anything else (a symbolic divisor, a fractional scale, a function we do not know) leaves the
//! string as it was: an opaque symbol, as before.

use super::dim::Dim;
use std::collections::BTreeMap;

/// Bounds on what is rewritten, so a hostile `dim_param` costs little: deeper nesting or larger
/// polynomials than real exports ever write stay opaque strings.
const MAX_DEPTH: usize = 64;
const MAX_TERMS: usize = 64;

/// A factor of a monomial.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Atom {
    Sym(String),
    /// `floor(P / d)`, `d >= 2`, `P` already normal with its constant in `0..d`.
    Floor(Box<Poly>, i64),
}

/// Σ coefficient · Π atoms; the empty product is the constant term. No zero coefficients.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Poly(BTreeMap<Vec<Atom>, i64>);

impl Poly {
    fn constant(c: i64) -> Poly {
        let mut p = Poly::default();
        p.push(Vec::new(), c);
        p
    }

    fn atom(a: Atom) -> Poly {
        let mut p = Poly::default();
        p.push(vec![a], 1);
        p
    }

    fn push(&mut self, mono: Vec<Atom>, c: i64) -> Option<()> {
        let e = self.0.entry(mono).or_insert(0);
        *e = e.checked_add(c)?;
        if *e == 0 {
            self.0.retain(|_, v| *v != 0);
        }
        Some(())
    }

    fn as_constant(&self) -> Option<i64> {
        match self.0.len() {
            0 => Some(0),
            1 => self.0.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    fn constant_term(&self) -> i64 {
        self.0.get(&Vec::new()).copied().unwrap_or(0)
    }

    fn add(&self, o: &Poly) -> Option<Poly> {
        let mut p = self.clone();
        for (m, &c) in &o.0 {
            p.push(m.clone(), c)?;
        }
        (p.0.len() <= MAX_TERMS).then_some(p)
    }

    fn scale(&self, k: i64) -> Option<Poly> {
        let mut p = Poly::default();
        for (m, &c) in &self.0 {
            p.push(m.clone(), c.checked_mul(k)?)?;
        }
        Some(p)
    }

    fn mul(&self, o: &Poly) -> Option<Poly> {
        if self.0.len().saturating_mul(o.0.len()) > MAX_TERMS {
            return None;
        }
        let mut p = Poly::default();
        for (a, &ca) in &self.0 {
            for (b, &cb) in &o.0 {
                let mut m: Vec<Atom> = a.iter().chain(b).cloned().collect();
                m.sort();
                p.push(m, ca.checked_mul(cb)?)?;
            }
        }
        Some(p)
    }

    /// `floor(self / d)` in normal form.
    fn floor_div(&self, d: i64) -> Option<Poly> {
        if d <= 0 {
            return None;
        }
        if d == 1 {
            return Some(self.clone());
        }
        // Multiples of d leave the floor; so does the constant's quotient.
        let (mut q, mut r) = (Poly::default(), Poly::default());
        for (m, &c) in &self.0 {
            q.push(m.clone(), c.div_euclid(d))?;
            r.push(m.clone(), c.rem_euclid(d))?;
        }
        let c = r.constant_term();
        let mut x = r.clone();
        x.push(Vec::new(), -c)?;
        if x.0.is_empty() {
            return Some(q); // 0 <= c < d
        }
        let g = x.0.values().fold(d, |g, &v| gcd(g, v));
        let inner = if g > 1 {
            x.scale_down(g)?
                .add(&Poly::constant(c / g))?
                .floor_div(d / g)?
        } else if let Some((p, m)) = x.single_floor() {
            p.add(&Poly::constant(c.checked_mul(m)?))?
                .floor_div(m.checked_mul(d)?)?
        } else {
            Poly::atom(Atom::Floor(Box::new(r), d))
        };
        q.add(&inner)
    }

    /// Every coefficient divided by `g`, which divides them all.
    fn scale_down(&self, g: i64) -> Option<Poly> {
        let mut p = Poly::default();
        for (m, &c) in &self.0 {
            p.push(m.clone(), c / g)?;
        }
        Some(p)
    }

    /// `(P, m)` when this is exactly `1 · floor(P/m)`.
    fn single_floor(&self) -> Option<(Poly, i64)> {
        match self.0.iter().next() {
            Some((m, 1)) if self.0.len() == 1 => match m.as_slice() {
                [Atom::Floor(p, d)] => Some(((**p).clone(), *d)),
                _ => None,
            },
            _ => None,
        }
    }

    /// ONNX's integer Div by `d`: floor division where the dividend is never negative.
    fn trunc_div(&self, d: i64) -> Option<Poly> {
        (d > 0 && self.least()? >= 0).then(|| self.floor_div(d))?
    }

    /// The least value over symbols >= 1, when the polynomial provably takes it at all ones:
    /// every non-constant coefficient positive and every atom nondecreasing and not negative.
    fn least(&self) -> Option<i64> {
        let mut sum = 0i64;
        for (m, &c) in &self.0 {
            let mut v = c;
            if !m.is_empty() && c <= 0 {
                return None;
            }
            for a in m {
                let at_one = match a {
                    Atom::Sym(_) => 1,
                    Atom::Floor(p, d) => match p.least()? {
                        x if x >= 0 => x / d,
                        _ => return None,
                    },
                };
                v = v.checked_mul(at_one)?;
            }
            sum = sum.checked_add(v)?;
        }
        Some(sum)
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let terms = self
            .0
            .iter()
            .filter(|(m, _)| !m.is_empty())
            .chain(self.0.get_key_value(&Vec::new()));
        for (m, &c) in terms {
            let factors: Vec<String> = m.iter().map(Atom::render).collect();
            let term = match (c, factors.is_empty()) {
                (_, true) => c.to_string(),
                (1, false) => factors.join("*"),
                (-1, false) => format!("-{}", factors.join("*")),
                _ => format!("{c}*{}", factors.join("*")),
            };
            if !out.is_empty() && !term.starts_with('-') {
                out.push('+');
            }
            out.push_str(&term);
        }
        if out.is_empty() {
            out.push('0');
        }
        out
    }
}

impl Atom {
    fn render(&self) -> String {
        match self {
            Atom::Sym(s) => s.clone(),
            Atom::Floor(p, d) => match p.0.iter().next() {
                Some((m, 1)) if p.0.len() == 1 && matches!(m.as_slice(), [Atom::Sym(_)]) => {
                    format!("floor({}/{d})", p.render())
                }
                _ => format!("floor(({})/{d})", p.render()),
            },
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a as i64
}

/// `s` in normal form: a known number when it is one, the canonical string otherwise; `None` when
/// it is not an expression this module can rewrite.
pub(super) fn normalize(s: &str) -> Option<Dim> {
    let mut parser = Parser {
        tokens: tokenize(s)?,
        at: 0,
        depth: 0,
    };
    let ast = parser.sum()?;
    if parser.at != parser.tokens.len() {
        return None;
    }
    let p = ast.eval()?;
    Some(match p.as_constant() {
        Some(c) => Dim::Known(c),
        None => Dim::Sym(p.render()),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(i64),
    Name(String),
    Op(&'static str),
}

fn tokenize(s: &str) -> Option<Vec<Token>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' => i += 1,
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                // A fractional number (a Resize scale) is not ours to rewrite.
                if i < b.len() && (b[i] == b'.' || b[i].is_ascii_alphabetic()) {
                    return None;
                }
                out.push(Token::Num(s[start..i].parse().ok()?));
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Token::Name(s[start..i].to_string()));
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                out.push(Token::Op("//"));
                i += 2;
            }
            b'+' | b'-' | b'*' | b'/' | b'(' | b')' => {
                let op = match c {
                    b'+' => "+",
                    b'-' => "-",
                    b'*' => "*",
                    b'/' => "/",
                    b'(' => "(",
                    _ => ")",
                };
                out.push(Token::Op(op));
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[derive(Debug)]
enum Ast {
    Num(i64),
    Sym(String),
    Neg(Box<Ast>),
    Bin(&'static str, Box<Ast>, Box<Ast>),
    Floor(Box<Ast>),
}

impl Ast {
    fn eval(&self) -> Option<Poly> {
        match self {
            Ast::Num(v) => Some(Poly::constant(*v)),
            Ast::Sym(s) => Some(Poly::atom(Atom::Sym(s.clone()))),
            Ast::Neg(a) => a.eval()?.scale(-1),
            Ast::Bin(op, a, b) => {
                let (a, b) = (a.eval()?, b.eval()?);
                match *op {
                    "+" => a.add(&b),
                    "-" => a.add(&b.scale(-1)?),
                    "*" => a.mul(&b),
                    "//" => a.floor_div(b.as_constant()?),
                    _ => a.trunc_div(b.as_constant()?),
                }
            }
            // floor(a/b) is floor division; floor of an integer is itself.
            Ast::Floor(inner) => match &**inner {
                Ast::Bin("/", a, b) => a.eval()?.floor_div(b.eval()?.as_constant()?),
                other => other.eval(),
            },
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Nesting of the expression being parsed: parentheses, calls and unary minus.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, op: &str) -> bool {
        let hit = matches!(self.peek(), Some(Token::Op(o)) if *o == op);
        self.at += usize::from(hit);
        hit
    }

    fn sum(&mut self) -> Option<Ast> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Some(Token::Op(o @ ("+" | "-"))) => *o,
                _ => return Some(left),
            };
            self.at += 1;
            left = Ast::Bin(op, Box::new(left), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Option<Ast> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::Op(o @ ("*" | "/" | "//"))) => *o,
                _ => return Some(left),
            };
            self.at += 1;
            left = Ast::Bin(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Option<Ast> {
        self.depth += 1;
        let ast = (self.depth <= MAX_DEPTH).then(|| self.primary()).flatten();
        self.depth -= 1;
        ast
    }

    fn primary(&mut self) -> Option<Ast> {
        if self.eat("-") {
            return Some(Ast::Neg(Box::new(self.unary()?)));
        }
        match self.peek()?.clone() {
            Token::Num(v) => {
                self.at += 1;
                Some(Ast::Num(v))
            }
            Token::Name(name) => {
                self.at += 1;
                if !self.eat("(") {
                    return Some(Ast::Sym(name));
                }
                // The only function we know; Max, Mod, ceiling and friends stay opaque.
                if name != "floor" {
                    return None;
                }
                let inner = self.sum()?;
                self.eat(")").then(|| Ast::Floor(Box::new(inner)))
            }
            Token::Op("(") => {
                self.at += 1;
                let inner = self.sum()?;
                self.eat(")").then_some(inner)
            }
            Token::Op(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        match normalize(s) {
            Some(Dim::Sym(s)) => s,
            Some(Dim::Known(v)) => format!("={v}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn one_size_three_spellings() {
        // Two stride-2 3x3 convolutions (ours), the exporter's Resize sizes (Div truncates), and
        // torch's declared value_info: all ceil(h/4).
        let ours = n("floor(((floor((height+1)/2))+1)/2)");
        assert_eq!(ours, "floor((height+3)/4)");
        assert_eq!(n("1+(((-1)+height)/4)"), ours);
        assert_eq!(n("(((height - 1)//4)) + 1"), ours);
        // And their products, in either order.
        let area = n("((((width - 1)//4)) + 1)*((((height - 1)//4)) + 1)");
        assert_eq!(area, "floor((height+3)/4)*floor((width+3)/4)");
        assert_eq!(n("(floor((height+3)/4))*(floor((width+3)/4))"), area);
    }

    #[test]
    fn the_rules_hold_on_every_small_value() {
        // Each rewrite against evaluating the original with integer floor division.
        type Oracle = fn(i64) -> i64;
        let cases: [(&str, Oracle); 6] = [
            ("floor((2*h+1)/4)", |h| (2 * h + 1).div_euclid(4)),
            ("floor((h+7)/4)", |h| (h + 7).div_euclid(4)),
            ("(h-1)//4+1", |h| (h - 1).div_euclid(4) + 1),
            ("floor((floor((h+1)/2)+1)/2)", |h| {
                ((h + 1).div_euclid(2) + 1).div_euclid(2)
            }),
            ("floor((6*h+3)/4)", |h| (6 * h + 3).div_euclid(4)),
            ("(h//3)//5", |h| h.div_euclid(3).div_euclid(5)),
        ];
        for (text, f) in cases {
            let Dim::Sym(canon) = normalize(text).unwrap() else {
                panic!("{text}")
            };
            // Evaluate the canonical form through the same parser, with h bound to a number.
            for h in 1..200 {
                let bound = canon.replace('h', &format!("({h})"));
                assert_eq!(
                    normalize(&bound),
                    Some(Dim::Known(f(h))),
                    "{text} -> {canon} at h={h}"
                );
            }
        }
    }

    #[test]
    fn normal_forms_are_fixed_points_and_constants_fold() {
        for s in [
            "floor((height+3)/4)",
            "2*h*w",
            "h+w-1",
            "3*floor((h+1)/2)",
            "w*floor(h/2)+7",
            "-h+5",
        ] {
            assert_eq!(n(s), s, "{s}");
        }
        assert_eq!(n("2*(h+1)"), "2*h+2");
        assert_eq!(n("h-h"), "=0");
        assert_eq!(n("(8+1)//2"), "=4");
        assert_eq!(n("floor((2*h+4)/2)"), "h+2");
        assert_eq!(n("w*h*19"), "19*h*w");
    }

    #[test]
    fn what_cannot_be_proved_stays_opaque() {
        // A possibly negative dividend: truncation is not floor division there.
        assert_eq!(normalize("(h-5)/4"), None);
        // A symbolic divisor, a fractional scale, an unknown function, garbage.
        assert_eq!(normalize("h/w"), None);
        assert_eq!(normalize("floor((h)*0.5)"), None);
        assert_eq!(normalize("Max(1, h)"), None);
        assert_eq!(normalize("h+"), None);
        assert_eq!(normalize("(h"), None);
        assert_eq!(normalize("h $ 2"), None);
        assert_eq!(normalize("99999999999999999999"), None);
        // Hostile sizes: deep nesting, and products that would expand to millions of terms.
        let deep = format!("{}h{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(normalize(&deep), None);
        assert_eq!(normalize(&format!("{}h", "-".repeat(100_000))), None);
        let wide: Vec<String> = (0..30).map(|i| format!("(a{i}+b{i})")).collect();
        assert_eq!(normalize(&wide.join("*")), None);
        // Nesting a real export writes is well inside the bounds.
        assert_eq!(n(&format!("{}h{}", "(".repeat(20), ")".repeat(20))), "h");
    }
}
