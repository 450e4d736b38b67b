//! Parameter paths: where a visit of a model stands, and the visitor and mapper adaptors that track
//! it, so that saving, loading and the optimizer's id map all name every parameter the same way.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

const LINEAR: &str = "Struct:Linear";
const NORMS: [&str; 4] = [
    "Struct:BatchNorm",
    "Struct:LayerNorm",
    "Struct:GroupNorm",
    "Struct:RmsNorm",
];

/// Where a module visit stands: the names and container types of the modules above. Saving and
/// loading both name parameters from it, so they agree on every name.
#[derive(Default)]
pub(crate) struct ModulePath {
    names: Vec<String>,
    containers: Vec<String>,
}

impl ModulePath {
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        self.names.push(name.to_owned());
        self.containers.push(container_type.to_owned());
    }

    pub(crate) fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }

    /// The parameter's burn path (`layers.0.weight`).
    pub(crate) fn burn_name(&self) -> String {
        self.names.join(".")
    }

    /// The parameter's name in the file (without the `model.` prefix), and whether it is a linear
    /// weight (`[in, out]` in burn, written `[out, in]`): PyTorch's names and layout.
    pub(crate) fn file_name(&self, rank: usize) -> (String, bool) {
        // The module that owns the parameter: the innermost user-defined struct above it.
        let owner = self
            .containers
            .iter()
            .rev()
            .find(|c| c.starts_with("Struct:"))
            .map(String::as_str);
        let mut path = self.names.clone();
        let field = path.last().cloned().unwrap_or_default();
        let transpose = owner == Some(LINEAR) && field == "weight" && rank == 2;
        if owner.is_some_and(|o| NORMS.contains(&o)) {
            let renamed = match field.as_str() {
                "gamma" => Some("weight"),
                "beta" => Some("bias"),
                _ => None,
            };
            if let (Some(renamed), Some(last)) = (renamed, path.last_mut()) {
                *last = renamed.to_owned();
            }
        }
        (path.join("."), transpose)
    }
}

/// Visits each float parameter with its path.
pub(crate) trait PathVisitor {
    fn visit_float<const D: usize>(&mut self, at: &ModulePath, param: &Param<Tensor<D>>);
}

/// Maps each float parameter, knowing its path.
pub(crate) trait PathMapper {
    fn map_float<const D: usize>(&mut self, at: &ModulePath, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

/// Each trainable parameter's burn path (`norm.gamma`) and name in a checkpoint (`norm.weight`,
/// without `model.`), in visit order.
pub(crate) fn trainable_names<M: Module>(model: &M) -> Vec<(String, String)> {
    struct Names(Vec<(String, String)>);
    impl PathVisitor for Names {
        fn visit_float<const D: usize>(&mut self, at: &ModulePath, param: &Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.0.push((at.burn_name(), at.file_name(D).0));
            }
        }
    }
    visit_with_path(model, Names(Vec::new())).0
}

/// Runs `visitor` over `model`'s float parameters, and returns it.
pub(crate) fn visit_with_path<M: Module, V: PathVisitor>(model: &M, visitor: V) -> V {
    let mut tracked = Tracked {
        at: ModulePath::default(),
        inner: visitor,
    };
    model.visit(&mut tracked);
    tracked.inner
}

/// Maps `model`'s float parameters with `mapper`, and returns both.
pub(crate) fn map_with_path<M: Module, F: PathMapper>(model: M, mapper: F) -> (M, F) {
    let mut tracked = Tracked {
        at: ModulePath::default(),
        inner: mapper,
    };
    let model = model.map(&mut tracked);
    (model, tracked.inner)
}

struct Tracked<T> {
    at: ModulePath,
    inner: T,
}

impl<V: PathVisitor> ModuleVisitor for Tracked<V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.at.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.inner.visit_float(&self.at, param);
    }
}

impl<F: PathMapper> ModuleMapper for Tracked<F> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.at.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.inner.map_float(&self.at, param)
    }
}
