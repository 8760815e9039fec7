"""Allow-listing of a preset's Keras config before anything in it is deserialised.

A preset may come from anyone on the Hub, so its `config.json` is untrusted data.
Keras turns a config into objects by looking up the classes and functions it names,
which is how a planted config could import a module or run serialized bytecode.
`check_config` walks the whole tree first and refuses, with the path of the
offending node, everything that does not resolve to

- a class or function registered by ddeq_keras (registered name ``ddeq_keras>...``,
  looked up in Keras's registry, never imported by name), or
- a Keras built-in (``module`` is ``keras`` or ``keras.*``), except the built-ins
  that carry code: `Lambda` (a Python function), `TorchModuleWrapper` (a pickled
  torch module), `TFSMLayer` (a TensorFlow SavedModel) and the JAX/Flax wrappers.

Serialized code (``__lambda__``) is refused wherever it appears.
"""

import keras

from ddeq_keras.presets.errors import PresetError

PACKAGE = "ddeq_keras"

# Keras built-ins whose config carries or loads code: never from a downloaded file.
CODE_CARRYING_CLASSES = frozenset(
    {"Lambda", "TorchModuleWrapper", "TFSMLayer", "JaxLayer", "FlaxLayer"}
)

# Special nodes of Keras's serialization that hold data only (arrays, bytes, slices).
DATA_NODES = frozenset(
    {"__numpy__", "__tensor__", "__bytes__", "__ellipsis__", "__slice__", "__keras_tensor__"}
)

# Nodes that carry code, or name a class outside the rules above by another key.
CODE_NODES = frozenset({"__lambda__", "__typespec__"})

# Keras modules searched for a function saved with module "builtins" (by name only).
_BUILTIN_FUNCTION_MODULES = (
    "activations", "constraints", "initializers", "losses", "metrics", "regularizers",
)


def _is_keras_module(module):
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def _registered_here(key):
    """The object registered under `key` if ddeq_keras registered it, else None.

    Raises:
        PresetError: if another package registered an object under `key` (Keras
            would prefer it over the built-in the config might mean).
    """
    if not isinstance(key, str):
        return None
    obj = keras.saving.get_registered_object(key)
    if obj is None:
        return None
    name = keras.saving.get_registered_name(obj)
    if not name.startswith(PACKAGE + ">"):
        raise PresetError(f"it resolves to {name!r}, registered by a package other than {PACKAGE}")
    return obj


def _check_node(node, where):
    """Checks one ``{"class_name": ...}`` node; raises PresetError on refusal."""
    class_name = node.get("class_name")
    if not isinstance(class_name, str):
        raise PresetError(f"config node at {where} has a non-string class_name {class_name!r}")
    if class_name in CODE_NODES:
        raise PresetError(
            f"config node at {where} holds serialized code ({class_name!r}); presets "
            "never run code from a file: re-export the model without Lambda layers or "
            "inline functions"
        )
    if class_name in DATA_NODES:
        return
    module = node.get("module")
    if class_name == "function":
        # Keras looks functions up by the name in "config" first, then by module.
        lookup = node.get("config")
        what = f"function {module}.{lookup}" if module else f"function {lookup!r}"
    else:
        lookup = node.get("registered_name", class_name)
        what = f"class {module}.{class_name}" if module else f"class {class_name!r}"
    try:
        if _registered_here(lookup) is not None:
            return
    except PresetError as error:
        raise PresetError(f"config asks for {what} at {where}, but {error}") from None
    if class_name in CODE_CARRYING_CLASSES:
        raise PresetError(
            f"config asks for a {class_name} layer at {where}: its config carries code, "
            "which presets never load; re-export the model without it"
        )
    if _is_keras_module(module):
        return
    if class_name == "function" and module == "builtins" and isinstance(lookup, str):
        # Keras resolves these by name among its own built-in function modules only.
        for mod in _BUILTIN_FUNCTION_MODULES:
            if hasattr(getattr(keras, mod), lookup):
                return
    raise PresetError(
        f"config asks for {what} at {where}, which is neither registered by {PACKAGE} "
        "nor a Keras built-in; refused before importing anything. Presets may only use "
        f"{PACKAGE}'s registered classes and Keras's own layers"
    )


def check_config(tree, where="config"):
    """Refuses a config tree that names anything outside the allow-list.

    Args:
        tree: the parsed JSON (dicts, lists, plain values) of a Keras config.
        where: the path of `tree` in the file, used in error messages.

    Raises:
        PresetError: naming the offending node's path and class.
    """
    # Importing the models registers ddeq_keras's classes, so registered names resolve.
    import ddeq_keras.models  # noqa: F401

    stack = [(tree, where)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node:
                _check_node(node, path)
            stack.extend((value, f"{path}.{key}") for key, value in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node))
