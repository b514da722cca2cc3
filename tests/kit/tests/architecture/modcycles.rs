//! Import cycles between the modules of one crate.
//!
//! The module graph is read from the source: each `.rs` file under the crate's
//! source directory is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs`
//! and `main.rs` the crate root), and a module imports every module a
//! `use crate::…`, `super::…` or `self::…` path of it names (also paths
//! written inline, and `use child::…` of its own child modules). Re-exports
//! (`pub use`, `pub(…) use`) do not count, nor does anything after the first
//! `#[cfg(test)] mod …`, nor files named `*tests.rs` or under a `tests/`
//! directory. Cycles are the strongly connected components of more than one
//! module (Tarjan).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// A module path inside its crate (`["openclaw", "methods"]`); empty for the root.
pub type Module = Vec<String>;

/// Which modules each module imports.
pub type Graph = BTreeMap<Module, BTreeSet<Module>>;

static CFG_TEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{").expect("regex"));
static LINE_COMMENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"//[^\n]*").expect("regex"));
static REEXPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bpub(\([^)]*\))?\s+use\s+[^;]+;").expect("regex"));
static USE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\buse\s+([^;]+);").expect("regex"));
static INLINE_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b((?:crate|super|self)(?:::\w+)+)").expect("regex"));

/// The module name of each source file under `src`, with its path.
pub fn modules(src: &Path) -> BTreeMap<Module, Vec<PathBuf>> {
    let mut modules: BTreeMap<Module, Vec<PathBuf>> = BTreeMap::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).expect("read source directory");
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path
                    .strip_prefix(src)
                    .expect("under src")
                    .with_extension("");
                let mut module: Module = relative
                    .components()
                    .filter_map(|c| c.as_os_str().to_str().map(str::to_owned))
                    .collect();
                if module
                    .last()
                    .is_some_and(|last| matches!(last.as_str(), "mod" | "lib" | "main"))
                {
                    module.pop();
                }
                modules.entry(module).or_default().push(path);
            }
        }
    }
    modules
}

/// Whether a file holds only tests (`*tests.rs`, or under a `tests/` directory).
fn is_test_file(src: &Path, path: &Path) -> bool {
    let relative = path.strip_prefix(src).unwrap_or(path);
    relative
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with("tests.rs"))
        || relative.components().any(|c| c.as_os_str() == "tests")
}

/// The source that counts for imports: before the first test module, without
/// line comments.
fn without_tests(text: &str) -> String {
    let text = match CFG_TEST.find(text) {
        Some(found) => &text[..found.start()],
        None => text,
    };
    LINE_COMMENT.replace_all(text, "").into_owned()
}

/// The full paths of a `use` tree (`a::{b, c::{d as e}}` → `a::b`, `a::c::d`).
fn expand_use(tree: &str) -> Vec<String> {
    fn walk(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let mut depth = 0;
        let mut item = String::new();
        let mut items = Vec::new();
        for ch in tree.chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if ch == ',' && depth == 0 {
                items.push(std::mem::take(&mut item));
            } else {
                item.push(ch);
            }
        }
        items.push(item);
        for item in items
            .iter()
            .map(|item| item.trim())
            .filter(|i| !i.is_empty())
        {
            match item.find('{') {
                Some(open) => {
                    let inner = item[open + 1..]
                        .strip_suffix('}')
                        .unwrap_or(&item[open + 1..]);
                    walk(&format!("{prefix}{}", &item[..open]), inner, out);
                }
                None => {
                    let path = item.split(" as ").next().unwrap_or(item);
                    out.push(format!("{prefix}{path}").replace(char::is_whitespace, ""));
                }
            }
        }
    }
    let tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    walk("", &tree, &mut out);
    out
}

/// Every module path `text` refers to.
fn references(text: &str) -> Vec<String> {
    let text = REEXPORT.replace_all(text, "");
    let mut paths: Vec<String> = USE
        .captures_iter(&text)
        .flat_map(|captures| expand_use(&captures[1]))
        .collect();
    paths.extend(
        INLINE_PATH
            .captures_iter(&text)
            .map(|captures| captures[1].to_owned()),
    );
    paths
}

/// The module `path`, written in module `from`, names; `None` for another crate.
fn resolve<V>(from: &Module, path: &str, modules: &BTreeMap<Module, V>) -> Option<Module> {
    let segments: Vec<&str> = path.split("::").collect();
    let (mut current, rest) = match segments.first() {
        Some(&"crate") => (Module::new(), &segments[1..]),
        Some(&("super" | "self")) => {
            let mut base = from.clone();
            let mut skip = 0;
            for segment in &segments {
                match *segment {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                skip += 1;
            }
            (base, &segments[skip..])
        }
        Some(first) => {
            let mut child = from.clone();
            child.push((*first).to_owned());
            if !modules.contains_key(&child) {
                return None;
            }
            (from.clone(), &segments[..])
        }
        None => return None,
    };
    for segment in rest {
        current.push((*segment).to_owned());
        if !modules.contains_key(&current) {
            current.pop();
            break;
        }
    }
    Some(current)
}

/// The import graph of the crate whose source directory is `src`.
pub fn graph(src: &Path) -> Graph {
    let modules = modules(src);
    let sources: BTreeMap<Module, String> = modules
        .iter()
        .map(|(module, paths)| {
            let text = paths
                .iter()
                .filter(|path| !is_test_file(src, path))
                .map(|path| std::fs::read_to_string(path).expect("read source file"))
                .map(|text| without_tests(&text))
                .collect::<Vec<_>>()
                .join("\n");
            (module.clone(), text)
        })
        .collect();
    let test_only: BTreeSet<&Module> = modules
        .iter()
        .filter(|(_, paths)| paths.iter().all(|path| is_test_file(src, path)))
        .map(|(module, _)| module)
        .collect();
    graph_of(&sources, &test_only)
}

/// The import graph of modules given as source text; `test_only` modules are
/// neither read nor imported.
pub fn graph_of(sources: &BTreeMap<Module, String>, test_only: &BTreeSet<&Module>) -> Graph {
    let mut graph = Graph::new();
    for (module, text) in sources {
        let imports = graph.entry(module.clone()).or_default();
        if test_only.contains(module) {
            continue;
        }
        for path in references(text) {
            if let Some(target) = resolve(module, &path, sources)
                && &target != module
                && !test_only.contains(&target)
            {
                imports.insert(target);
            }
        }
    }
    graph
}

/// The strongly connected components of more than one module, each sorted, in
/// a stable order.
pub fn cycles(graph: &Graph) -> Vec<Vec<Module>> {
    struct Tarjan<'a> {
        graph: &'a Graph,
        next: usize,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }

    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a Module) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }

    let mut tarjan = Tarjan {
        graph,
        next: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v) {
            tarjan.visit(v);
        }
    }
    tarjan.found.sort();
    tarjan.found
}

/// `a::b`, or `crate` for the root.
pub fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

/// One line per cycle: its modules, then each module's imports inside it.
pub fn describe(graph: &Graph, cycles: &[Vec<Module>]) -> String {
    let mut out = String::new();
    for cycle in cycles {
        let members: BTreeSet<&Module> = cycle.iter().collect();
        let names: Vec<String> = cycle.iter().map(name).collect();
        out.push_str(&format!("cycle of {}: {}\n", cycle.len(), names.join(", ")));
        for module in cycle {
            let inside: Vec<String> = graph
                .get(module)
                .into_iter()
                .flatten()
                .filter(|target| members.contains(target))
                .map(name)
                .collect();
            out.push_str(&format!("    {} -> {}\n", name(module), inside.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str) -> Module {
        if path.is_empty() {
            Module::new()
        } else {
            path.split("::").map(str::to_owned).collect()
        }
    }

    fn sources(files: &[(&str, &str)]) -> BTreeMap<Module, String> {
        files
            .iter()
            .map(|(path, text)| (module(path), without_tests(text)))
            .collect()
    }

    #[test]
    fn use_trees_expand_to_full_paths() {
        assert_eq!(
            expand_use("crate::{a::{self, B}, c as d,\n super::e::F}"),
            [
                "crate::a::self",
                "crate::a::B",
                "crate::c",
                "crate::super::e::F"
            ]
        );
    }

    #[test]
    fn finds_a_cycle_and_ignores_what_does_not_count() {
        let sources = sources(&[
            ("", "mod a; mod b; mod c; mod d; pub use crate::d::Thing;"),
            // a → b → c → a is a cycle, written three different ways.
            ("a", "use crate::b::Thing;"),
            ("b", "use super::{c::Other, x};"),
            ("c", "fn f() { crate::a::g() }"),
            // d re-exports from a (does not count), imports a only in its
            // tests or in a comment, and imports its own child inline.
            (
                "d",
                "pub use crate::a::G;\n// use crate::a;\nmod inner; use inner::X;\n\
                 #[cfg(test)]\nmod tests { use crate::a::G; }",
            ),
            ("d::inner", "use super::super::b::Thing;"),
            // A file of tests may import anything.
            ("d::tests", "use crate::d::inner;"),
        ]);
        let tests = module("d::tests");
        let test_only = BTreeSet::from([&tests]);
        let graph = graph_of(&sources, &test_only);
        assert_eq!(
            graph[&module("d")],
            BTreeSet::from([module("d::inner")]),
            "{graph:?}"
        );
        assert_eq!(graph[&module("d::inner")], BTreeSet::from([module("b")]));
        assert_eq!(graph[&module("")], BTreeSet::new());
        let cycles = cycles(&graph);
        assert_eq!(cycles, [vec![module("a"), module("b"), module("c")]]);
        assert_eq!(
            describe(&graph, &cycles),
            "cycle of 3: a, b, c\n    a -> b\n    b -> c\n    c -> a\n"
        );
    }

    #[test]
    fn a_graph_without_cycles_has_none() {
        let sources = sources(&[
            ("", "mod a; mod b;"),
            ("a", "use crate::b;"),
            ("b", "use std::fmt;"),
        ]);
        assert!(cycles(&graph_of(&sources, &BTreeSet::new())).is_empty());
    }
}
