//! The rules of `ARCHITECTURE.md`, checked against the sources as rustc reads them: a module of the
//! library names only modules in lower layers, and inside `runner` the platform names nothing of the
//! loops. Test code is not checked.
//!
//! Each source file is parsed with `syn`, and every path it writes is followed to the modules it
//! passes through: `use` trees (grouped, nested, over any number of lines), paths in code and types,
//! paths in macro arguments and in `#[serde(with = "…")]`, `crate::`, `self::` and `super::` paths,
//! names brought in by `use`, and re-exports (`crate::Runner` is `runner`, then `runner::base`). The
//! crate root (`lib.rs`) only re-exports, so it is passed through without counting; `runner/mod.rs`
//! likewise for the platform/loops split. Anything under `#[cfg(test)]` (a module, a function, an
//! impl, a statement, an expression, wherever it is in a file), `tests.rs` files and `tests/`
//! directories are test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::buffer::{Cursor, TokenBuffer};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Attribute, Expr, Item, Meta, Token, UseTree};

/// A module, by its path from the crate root: `["runner", "platform", "mpi"]`.
type ModPath = Vec<String>;

// ---------------------------------------------------------------------------------------------------
// The rules, as ARCHITECTURE.md writes them.

/// The rules of `ARCHITECTURE.md`: the layers, bottom up, and the files of `runner/` besides
/// `platform/` that the platform may use.
#[derive(Debug)]
struct Rules {
    layers: Vec<Vec<String>>,
    platform_helpers: Vec<String>,
}

impl Rules {
    fn layer(&self, module: &str) -> Option<usize> {
        self.layers
            .iter()
            .position(|layer| layer.iter().any(|m| m == module))
    }

    /// Whether `module` is on the platform's side of the runner: `runner/platform/` or a helper.
    fn platform_side(&self, module: &[String]) -> bool {
        match module {
            [runner, second, ..] if runner == "runner" => {
                second == "platform" || self.platform_helpers.contains(second)
            }
            _ => false,
        }
    }
}

/// The rows of the markdown table whose header starts with `| {first} |`: each row's cells.
fn table(doc: &str, first: &str) -> Vec<Vec<String>> {
    let header = format!("| {first} |");
    let mut lines = doc
        .lines()
        .skip_while(|line| !line.trim_start().starts_with(&header));
    assert!(
        lines.next().is_some(),
        "ARCHITECTURE.md has no table headed `{header}`"
    );
    lines
        .skip(1) // | --- | --- |
        .map(str::trim)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The names in backticks in a table cell: `` `alloc`, `env` `` gives `alloc` and `env`.
fn quoted(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn rules() -> Rules {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ARCHITECTURE.md");
    let doc = std::fs::read_to_string(doc).unwrap();
    let rows = table(&doc, "layer");
    let layers: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(at, row)| {
            assert_eq!(
                row[0],
                at.to_string(),
                "ARCHITECTURE.md's layers are numbered from 0 in order"
            );
            quoted(&row[1])
        })
        .collect();
    assert!(
        layers.len() > 1 && layers.iter().all(|layer| !layer.is_empty()),
        "ARCHITECTURE.md's layer table could not be read"
    );
    let platform_helpers: Vec<String> = table(&doc, "platform helper")
        .iter()
        .flat_map(|row| quoted(&row[0]))
        .collect();
    assert!(
        !platform_helpers.is_empty(),
        "ARCHITECTURE.md lists no platform helper"
    );
    Rules {
        layers,
        platform_helpers,
    }
}

// ---------------------------------------------------------------------------------------------------
// Reading the sources.

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a source file is, from where it lies: `["runner", "step"]` for `runner/step.rs`,
/// `["runner"]` for `runner/mod.rs`, `[]` for `lib.rs`.
fn module_path(relative: &Path) -> ModPath {
    let mut path: ModPath = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod" || last == "lib") {
        path.pop();
    }
    path
}

/// Whether a file is test code by its name: a `tests.rs`, or anything in a `tests/` directory.
fn test_file(relative: &Path) -> bool {
    relative.file_name().is_some_and(|n| n == "tests.rs")
        || relative
            .parent()
            .is_some_and(|dir| dir.components().any(|c| c.as_os_str() == "tests"))
}

/// Whether `attrs` make their item test code: `#[cfg(test)]`, or a `cfg` that holds only in tests
/// (`all(test, …)`, `any(…)` of such).
fn is_test(attrs: &[Attribute]) -> bool {
    fn only_in_tests(meta: &Meta) -> bool {
        match meta {
            Meta::Path(path) => path.is_ident("test"),
            Meta::List(list) if list.path.is_ident("all") || list.path.is_ident("any") => {
                let Ok(inner) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) else {
                    return false;
                };
                if list.path.is_ident("all") {
                    inner.iter().any(only_in_tests)
                } else {
                    !inner.is_empty() && inner.iter().all(only_in_tests)
                }
            }
            _ => false,
        }
    }
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.parse_args::<Meta>().is_ok_and(|meta| only_in_tests(&meta))
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn expr_attrs(expr: &Expr) -> &[Attribute] {
    match expr {
        Expr::Array(e) => &e.attrs,
        Expr::Assign(e) => &e.attrs,
        Expr::Async(e) => &e.attrs,
        Expr::Await(e) => &e.attrs,
        Expr::Binary(e) => &e.attrs,
        Expr::Block(e) => &e.attrs,
        Expr::Break(e) => &e.attrs,
        Expr::Call(e) => &e.attrs,
        Expr::Cast(e) => &e.attrs,
        Expr::Closure(e) => &e.attrs,
        Expr::Const(e) => &e.attrs,
        Expr::Continue(e) => &e.attrs,
        Expr::Field(e) => &e.attrs,
        Expr::ForLoop(e) => &e.attrs,
        Expr::Group(e) => &e.attrs,
        Expr::If(e) => &e.attrs,
        Expr::Index(e) => &e.attrs,
        Expr::Infer(e) => &e.attrs,
        Expr::Let(e) => &e.attrs,
        Expr::Lit(e) => &e.attrs,
        Expr::Loop(e) => &e.attrs,
        Expr::Macro(e) => &e.attrs,
        Expr::Match(e) => &e.attrs,
        Expr::MethodCall(e) => &e.attrs,
        Expr::Paren(e) => &e.attrs,
        Expr::Path(e) => &e.attrs,
        Expr::Range(e) => &e.attrs,
        Expr::RawAddr(e) => &e.attrs,
        Expr::Reference(e) => &e.attrs,
        Expr::Repeat(e) => &e.attrs,
        Expr::Return(e) => &e.attrs,
        Expr::Struct(e) => &e.attrs,
        Expr::Try(e) => &e.attrs,
        Expr::TryBlock(e) => &e.attrs,
        Expr::Tuple(e) => &e.attrs,
        Expr::Unary(e) => &e.attrs,
        Expr::Unsafe(e) => &e.attrs,
        Expr::While(e) => &e.attrs,
        Expr::Yield(e) => &e.attrs,
        _ => &[],
    }
}

/// What a module's own code puts in scope: its child modules, the items it defines, the names its
/// `use` items bind (each to the path it names, as written there) and its glob imports. The `use`
/// items inside its functions are counted as its own: more names in scope, never fewer.
#[derive(Debug, Default)]
struct Scope {
    children: BTreeSet<String>,
    items: BTreeSet<String>,
    bindings: BTreeMap<String, Vec<ModPath>>,
    globs: Vec<ModPath>,
}

/// A path written in a module's code: `use` leaves and globs, paths in code, paths in macro tokens.
#[derive(Debug)]
struct Written {
    file: PathBuf,
    module: ModPath,
    path: ModPath,
    /// A path in code of one segment names a value or a type, never a module: a local variable of
    /// the same name as a module in scope is not that module.
    in_code: bool,
}

/// The crate as the checks see it: every module's scope, the paths each module writes, the modules
/// declared as test code, and the modules `lib.rs` defines (the crate root's façade).
#[derive(Debug, Default)]
struct Crate {
    scopes: BTreeMap<ModPath, Scope>,
    written: Vec<Written>,
    test_modules: BTreeSet<ModPath>,
    facade: BTreeSet<ModPath>,
}

/// Walks one file's non-test code, keeping track of the inline module it is in.
struct Reader<'a> {
    krate: &'a mut Crate,
    file: PathBuf,
    module: ModPath,
    in_lib: bool,
}

impl Reader<'_> {
    fn scope(&mut self) -> &mut Scope {
        self.krate.scopes.entry(self.module.clone()).or_default()
    }

    fn write(&mut self, path: ModPath, in_code: bool) {
        if !path.is_empty() {
            self.krate.written.push(Written {
                file: self.file.clone(),
                module: self.module.clone(),
                path,
                in_code,
            });
        }
    }

    /// A `use` tree: every leaf is a path written and (unless `_`) a binding; a glob is both too.
    fn use_tree(&mut self, prefix: &mut ModPath, tree: &UseTree) {
        match tree {
            UseTree::Path(path) => {
                prefix.push(path.ident.unraw().to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            UseTree::Name(name) => {
                let name = name.ident.unraw().to_string();
                let (bound, target) = if name == "self" {
                    (prefix.last().cloned().unwrap_or_default(), prefix.clone())
                } else {
                    (name.clone(), [prefix.as_slice(), &[name]].concat())
                };
                self.scope()
                    .bindings
                    .entry(bound)
                    .or_default()
                    .push(target.clone());
                self.write(target, false);
            }
            UseTree::Rename(rename) => {
                let target = [prefix.as_slice(), &[rename.ident.unraw().to_string()]].concat();
                let bound = rename.rename.unraw().to_string();
                if bound != "_" {
                    self.scope()
                        .bindings
                        .entry(bound)
                        .or_default()
                        .push(target.clone());
                }
                self.write(target, false);
            }
            UseTree::Glob(_) => {
                let target = prefix.clone();
                self.scope().globs.push(target.clone());
                self.write(target, false);
            }
            UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

/// What a token stream holds that the checks read: its runs `a::b::c` of two names or more (paths in
/// a macro's arguments, `$crate::x` in a macro's body) and its string literals.
#[derive(Debug, Default)]
struct Tokens {
    paths: Vec<ModPath>,
    strings: Vec<String>,
}

impl Tokens {
    fn of(buffer: &TokenBuffer) -> Self {
        let mut found = Self::default();
        found.scan(buffer.begin());
        found
    }

    fn scan(&mut self, mut cursor: Cursor<'_>) {
        let mut run: ModPath = Vec::new();
        let mut colons = 0;
        loop {
            if let Some((ident, next)) = cursor.ident() {
                if colons != 2 {
                    self.flush(&mut run);
                }
                run.push(ident.unraw().to_string());
                colons = 0;
                cursor = next;
                continue;
            }
            match cursor.punct() {
                Some((punct, next)) if punct.as_char() == ':' && !run.is_empty() && colons < 2 => {
                    colons += 1;
                    cursor = next;
                    continue;
                }
                _ => {}
            }
            self.flush(&mut run);
            colons = 0;
            if let Some((inside, _, _, next)) = cursor.any_group() {
                self.scan(inside);
                cursor = next;
            } else if let Some((literal, next)) = cursor.literal() {
                if let Ok(syn::Lit::Str(s)) = syn::parse_str::<syn::Lit>(&literal.to_string()) {
                    self.strings.push(s.value());
                }
                cursor = next;
            } else if let Some((_, next)) = cursor.lifetime() {
                cursor = next;
            } else if let Some((_, next)) = cursor.token_tree() {
                cursor = next;
            } else {
                break;
            }
        }
        self.flush(&mut run);
    }

    fn flush(&mut self, run: &mut ModPath) {
        if run.len() > 1 {
            self.paths.push(std::mem::take(run));
        }
        run.clear();
    }
}

impl<'ast> Visit<'ast> for Reader<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        if is_test(item_attrs(item)) {
            if let Item::Mod(module) = item {
                let path = [self.module.as_slice(), &[module.ident.unraw().to_string()]].concat();
                self.krate.test_modules.insert(path);
            }
            return;
        }
        match item {
            Item::Use(item) => {
                if item.leading_colon.is_none() {
                    self.use_tree(&mut Vec::new(), &item.tree);
                }
                return;
            }
            Item::Mod(module) => {
                let name = module.ident.unraw().to_string();
                self.scope().children.insert(name.clone());
                if let Some((_, items)) = &module.content {
                    self.module.push(name);
                    self.scope();
                    if self.in_lib {
                        self.krate.facade.insert(self.module.clone());
                    }
                    for attr in &module.attrs {
                        self.visit_attribute(attr);
                    }
                    for item in items {
                        self.visit_item(item);
                    }
                    self.module.pop();
                }
                return;
            }
            _ => {}
        }
        let name = match item {
            Item::Const(i) => Some(&i.ident),
            Item::Enum(i) => Some(&i.ident),
            Item::ExternCrate(i) => Some(i.rename.as_ref().map_or(&i.ident, |(_, r)| r)),
            Item::Fn(i) => Some(&i.sig.ident),
            Item::Macro(i) => i.ident.as_ref(),
            Item::Static(i) => Some(&i.ident),
            Item::Struct(i) => Some(&i.ident),
            Item::Trait(i) => Some(&i.ident),
            Item::TraitAlias(i) => Some(&i.ident),
            Item::Type(i) => Some(&i.ident),
            Item::Union(i) => Some(&i.ident),
            _ => None,
        };
        if let Some(name) = name {
            let name = name.unraw().to_string();
            self.scope().items.insert(name);
        }
        visit::visit_item(self, item);
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs: &[Attribute] = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_test(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast syn::TraitItem) {
        let attrs: &[Attribute] = match item {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_test(attrs) {
            visit::visit_trait_item(self, item);
        }
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if !is_test(&local.attrs) {
            visit::visit_local(self, local);
        }
    }

    fn visit_stmt_macro(&mut self, stmt: &'ast syn::StmtMacro) {
        if !is_test(&stmt.attrs) {
            visit::visit_stmt_macro(self, stmt);
        }
    }

    fn visit_expr(&mut self, expr: &'ast Expr) {
        if !is_test(expr_attrs(expr)) {
            visit::visit_expr(self, expr);
        }
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if !is_test(&arm.attrs) {
            visit::visit_arm(self, arm);
        }
    }

    fn visit_field(&mut self, field: &'ast syn::Field) {
        if !is_test(&field.attrs) {
            visit::visit_field(self, field);
        }
    }

    fn visit_field_value(&mut self, field: &'ast syn::FieldValue) {
        if !is_test(&field.attrs) {
            visit::visit_field_value(self, field);
        }
    }

    fn visit_variant(&mut self, variant: &'ast syn::Variant) {
        if !is_test(&variant.attrs) {
            visit::visit_variant(self, variant);
        }
    }

    fn visit_fn_arg(&mut self, arg: &'ast syn::FnArg) {
        let attrs = match arg {
            syn::FnArg::Receiver(r) => &r.attrs,
            syn::FnArg::Typed(t) => &t.attrs,
        };
        if !is_test(attrs) {
            visit::visit_fn_arg(self, arg);
        }
    }

    /// `pub(in crate::x)` limits who sees an item; it imports nothing.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    /// Attributes name no module, except through paths in strings that a derive turns into code
    /// (`#[serde(with = "crate::nonfinite")]`). Doc comments are not code.
    fn visit_attribute(&mut self, attr: &'ast Attribute) {
        if let Meta::List(list) = &attr.meta {
            for text in Tokens::of(&TokenBuffer::new2(list.tokens.clone())).strings {
                if let Ok(path) = syn::parse_str::<syn::Path>(&text)
                    && path.leading_colon.is_none()
                    && path.segments.len() > 1
                {
                    let path = path
                        .segments
                        .iter()
                        .map(|s| s.ident.unraw().to_string())
                        .collect();
                    self.write(path, true);
                }
            }
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            let written = path
                .segments
                .iter()
                .map(|s| s.ident.unraw().to_string())
                .collect();
            self.write(written, true);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        for path in Tokens::of(&TokenBuffer::new2(mac.tokens.clone())).paths {
            self.write(path, true);
        }
    }
}

impl Crate {
    /// Reads every source file under `src`: the scopes of their non-test code, and what it writes.
    fn read(src: &Path) -> Self {
        let mut files = Vec::new();
        sources(src, &mut files);
        files.sort();
        let mut krate = Self::default();
        for file in files {
            let relative = file.strip_prefix(src).unwrap().to_owned();
            if test_file(&relative) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", relative.display()));
            if is_test(&parsed.attrs) {
                continue;
            }
            let module = module_path(&relative);
            let in_lib = module.is_empty();
            if in_lib {
                krate.facade.insert(Vec::new());
            }
            let mut reader = Reader {
                krate: &mut krate,
                file: relative,
                module,
                in_lib,
            };
            reader.scope();
            for item in &parsed.items {
                reader.visit_item(item);
            }
        }
        // What a module declared as test code holds (`#[cfg(test)] mod tests;`, in any file) is not
        // checked.
        let tests = krate.test_modules.clone();
        let under_test = |module: &ModPath| tests.iter().any(|t| module.starts_with(t));
        krate.written.retain(|w| !under_test(&w.module));
        krate.scopes.retain(|module, _| !under_test(module));
        krate
    }

    /// The modules `path`, written in `module`, passes through, the façade left out. Nothing for a
    /// path that leaves the crate (`std::…`, `burn::…`, a prelude name, a local variable).
    fn reached(&self, module: &[String], path: &[String], in_code: bool) -> BTreeSet<ModPath> {
        let mut out = Walk::default();
        self.follow(module, path, 0, &mut out);
        if in_code && path.len() == 1 && !out.ends.is_empty() {
            // A single name in code is a value or a type: a module by that name is shadowed.
            return BTreeSet::new();
        }
        out.through.retain(|m| !m.is_empty() && !self.facade.contains(m));
        out.through
    }

    /// Follows `path` as written in `module`.
    fn follow(&self, module: &[String], path: &[String], depth: usize, out: &mut Walk) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        match first.as_str() {
            "crate" => self.walk(&[], rest, depth, out),
            "self" => self.walk(module, rest, depth, out),
            "super" => {
                let mut module = module.to_vec();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    module.pop();
                    rest = &rest[1..];
                }
                self.walk(&module, rest, depth, out);
            }
            // A path that starts with a name: a name in the module's scope, else another crate.
            _ => self.step(module, path, depth, out),
        }
    }

    /// In module `module` (passed through), on to the rest of the path.
    fn walk(&self, module: &[String], rest: &[String], depth: usize, out: &mut Walk) {
        out.through.insert(module.to_vec());
        if rest.is_empty() {
            out.ends.insert(module.to_vec());
        } else {
            self.step(module, rest, depth, out);
        }
    }

    /// Looks `path[0]` up in `module`'s scope as rustc does (a child module, an item or a `use`
    /// before a glob) and follows the rest from there.
    fn step(&self, module: &[String], path: &[String], depth: usize, out: &mut Walk) {
        if depth > 32 {
            return;
        }
        let Some(scope) = self.scopes.get(module) else {
            return;
        };
        let (name, rest) = path.split_first().unwrap();
        if scope.children.contains(name) {
            let child = [module, std::slice::from_ref(name)].concat();
            self.walk(&child, rest, depth + 1, out);
        } else if let Some(targets) = scope.bindings.get(name) {
            for target in targets {
                if target.first() == Some(name) {
                    // `use tracing;`: a name bound to itself is another crate's.
                    continue;
                }
                let full = [target.as_slice(), rest].concat();
                self.follow(module, &full, depth + 1, out);
            }
        } else if scope.items.contains(name) {
            // An item of `module`: the path ends here (what follows is an associated item).
        } else {
            for glob in &scope.globs {
                let mut at = Walk::default();
                self.follow(module, glob, depth + 1, &mut at);
                for end in at.ends {
                    let known = self.scopes.get(&end).is_some_and(|s| {
                        s.children.contains(name) || s.bindings.contains_key(name) || s.items.contains(name)
                    });
                    if known {
                        self.walk(&end, path, depth + 1, out);
                    }
                }
            }
        }
    }
}

/// Where following a path went: the modules it passed through, and those it ended at (a path that
/// ends at an item ends at no module).
#[derive(Debug, Default)]
struct Walk {
    through: BTreeSet<ModPath>,
    ends: BTreeSet<ModPath>,
}

// ---------------------------------------------------------------------------------------------------
// The checks.

/// A path against the rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    /// The importing side: a top-level module (`checkpoint`), or `runner::platform`.
    from: String,
    /// What it must not import: a top-level module (`runner`), or a file of the loops (`runner::step`).
    to: String,
    /// The file, relative to `src`.
    file: PathBuf,
    /// The path as written.
    path: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} imports {} in {} (`{}`)",
            self.from,
            self.to,
            self.file.display(),
            self.path
        )
    }
}

/// Every path against the rules, in the sources under `src`.
fn violations(src: &Path) -> BTreeSet<Violation> {
    let rules = rules();
    let krate = Crate::read(src);
    let mut found = BTreeSet::new();
    for written in &krate.written {
        // lib.rs re-exports from every layer and is not checked.
        if krate.facade.contains(&written.module) {
            continue;
        }
        let top = &written.module[0];
        let own = rules
            .layer(top)
            .unwrap_or_else(|| panic!("`{top}` has no layer in ARCHITECTURE.md"));
        let platform_side = rules.platform_side(&written.module);
        for reached in krate.reached(&written.module, &written.path, written.in_code) {
            let violation = |from: String, to: String| Violation {
                from,
                to,
                file: written.file.clone(),
                path: written.path.join("::"),
            };
            let theirs = &reached[0];
            if theirs != top && rules.layer(theirs).is_none_or(|theirs| theirs >= own) {
                found.insert(violation(top.clone(), theirs.clone()));
            }
            if platform_side && reached.len() > 1 && reached[0] == "runner" && !rules.platform_side(&reached)
            {
                let side = if written.module[1] == "platform" {
                    "runner::platform".to_owned()
                } else {
                    written.module[..2].join("::")
                };
                found.insert(violation(side, reached[..2].join("::")));
            }
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_imports_only_from_lower_layers_and_the_platform_not_from_the_loops() {
    let found = violations(&src());
    assert!(
        found.is_empty(),
        "imports against ARCHITECTURE.md:\n{}",
        found
            .iter()
            .map(|v| format!("  {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The files of `runner/` that import each other (`platform/` counted as one), as pairs in order.
fn mutual_imports(src: &Path) -> BTreeSet<(String, String)> {
    let krate = Crate::read(src);
    let mut edges = BTreeSet::new();
    for written in &krate.written {
        let [runner, file, ..] = written.module.as_slice() else {
            continue;
        };
        if runner != "runner" {
            continue;
        }
        for reached in krate.reached(&written.module, &written.path, written.in_code) {
            if let [theirs, other, ..] = reached.as_slice()
                && theirs == "runner"
                && other != file
            {
                edges.insert((file.clone(), other.clone()));
            }
        }
    }
    edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .cloned()
        .collect()
}

#[test]
fn no_two_files_of_the_runner_import_each_other() {
    let found = mutual_imports(&src());
    assert!(
        found.is_empty(),
        "files of runner/ that import each other: {found:?}"
    );
}

#[test]
fn two_runner_files_importing_each_other_are_caught() {
    let copy = copy_of_sources();
    // `step.rs` and the file of the split loop, as they once were.
    append(&copy.path().join("runner/train.rs"), "use super::step::sgd_like;");
    append(
        &copy.path().join("runner/step.rs"),
        "fn pending(_: &super::train::Split) {}",
    );
    assert_eq!(
        mutual_imports(copy.path()),
        BTreeSet::from([("step".to_owned(), "train".to_owned())])
    );
}

/// A copy of the library's sources, to plant imports in.
fn copy_of_sources() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    sources(&src(), &mut files);
    for file in &files {
        let target = copy.path().join(file.strip_prefix(src()).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(file, target).unwrap();
    }
    copy
}

/// Adds `code` at the end of `file`.
fn append(file: &Path, code: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    std::fs::write(file, format!("{text}\n{code}\n")).unwrap();
}

/// The violations that appear in a copy of the sources once `plant` has edited it.
fn planted(plant: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    let copy = copy_of_sources();
    let before = violations(copy.path());
    for (file, code) in plant {
        append(&copy.path().join(file), code);
    }
    violations(copy.path())
        .difference(&before)
        .map(|v| (v.from.clone(), v.to.clone()))
        .collect()
}

fn pairs(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
        .collect()
}

#[test]
fn a_cycle_put_back_is_caught() {
    // The checkpoint files importing the runner again, as they once did: even for a type the runner
    // only re-exports from a lower layer.
    assert_eq!(
        planted(&[("checkpoint/mod.rs", "use crate::runner::State;")]),
        pairs(&[("checkpoint", "runner")])
    );
}

#[test]
fn a_grouped_use_over_several_lines_is_caught() {
    let code = r#"
use crate::{
    fs::IoError,
    workspace::{
        RunDir,
        files::CHECKPOINT_EXTENSION,
    },
};"#;
    assert_eq!(
        planted(&[("results.rs", code)]),
        pairs(&[("results", "workspace")])
    );
}

#[test]
fn code_after_a_test_item_inside_a_function_is_caught() {
    // What is under `#[cfg(test)]` may name anything; the code after it, in the same function or the
    // same file, is checked.
    let code = r#"
fn planted() -> u64 {
    #[cfg(test)]
    let _ = crate::runner::Runner::builder;
    #[cfg(all(test, feature = "mpi"))]
    {
        crate::checkpoint::planted();
    }
    crate::workspace::timestamp()
}

#[cfg(test)]
fn also_test() {
    crate::log::planted();
}

#[cfg(test)]
mod planted_tests {
    use crate::optim::planted;
}

fn after() -> crate::identity::Identity {
    todo!()
}"#;
    assert_eq!(
        planted(&[("state.rs", code)]),
        pairs(&[("state", "workspace"), ("state", "identity")])
    );
}

#[test]
fn an_import_through_the_crate_roots_re_exports_is_caught() {
    // `crate::Config` is `config`, `crate::Identity` is `identity`, and the prelude's `Session` is
    // `runner`'s.
    let code = r#"
use crate::Config;

fn planted() {
    let _ = crate::Identity::with_experiment_id;
    let _: Option<crate::prelude::Session> = None;
}"#;
    assert_eq!(
        planted(&[("rng.rs", code)]),
        pairs(&[("rng", "config"), ("rng", "identity"), ("rng", "runner")])
    );
}

#[test]
fn paths_in_macros_and_derive_attributes_are_caught() {
    let code = r#"
fn planted() {
    tracing::info!("{}", crate::checkpoint::planted());
}

#[derive(serde::Serialize)]
struct Planted {
    #[serde(with = "crate::log::planted")]
    value: f64,
}"#;
    assert_eq!(
        planted(&[("results.rs", code)]),
        pairs(&[("results", "checkpoint"), ("results", "log")])
    );
}

#[test]
fn the_platform_importing_a_loop_is_caught() {
    // The helpers are allowed, and so are the platform's own items through the runner's re-exports.
    let allowed = r#"
use crate::runner::grads::clamp;
use super::super::buffers::sync;
use crate::runner::{Platform, PlatformError};"#;
    assert_eq!(planted(&[("runner/platform/local.rs", allowed)]), pairs(&[]));
    let loops = r#"
use super::super::base::LATEST;

fn planted() {
    crate::runner::step::planted();
    let _ = crate::Runner::builder;
}"#;
    assert_eq!(
        planted(&[("runner/platform/local.rs", loops)]),
        pairs(&[
            ("runner::platform", "runner::base"),
            ("runner::platform", "runner::step"),
        ])
    );
    // A helper the platform uses imports nothing of the loops either.
    assert_eq!(
        planted(&[("runner/grads.rs", "use super::session::Session;")]),
        pairs(&[("runner::grads", "runner::session")])
    );
}
