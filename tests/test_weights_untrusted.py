"""Weights files from strangers: sizes are checked from what the file declares, before any data is read.

A downloaded ``.npz`` can declare anything: a deflated run of zeros that inflates to 8 GB under a real
parameter's name, a ``.npy`` header claiming 2**40 floats, a zip entry whose declared size disagrees
with its header, a dtype that would unpickle. Each must be refused with one CorruptInputError line,
in well under a second and without allocating what it declares; every honest file must still load,
bit for bit. The files are made by hand (``npz_craft``): the 8 GB bomb is about 8 MB on disk and is
never inflated, not even to build it.
"""

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from npz_craft import DEFLATED, STORED, Member, member, members_of, npy_header, replace, write_zip, zeros_bomb

import nncore
from nncore import weights
from nncore.errors import CorruptInputError, UsageError
from nncore.layers import LAYERS, Conv2D, Dense, Flatten
from nncore.sequential import Sequential

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 2**30


def tiny_model():
    layers = [Conv2D(1, 2, 3, rng=0), Flatten(), Dense(8, 3, rng=1)]
    return Sequential(layers, (1, 4, 4), class_names=["a", "b", "c"])


@pytest.fixture(scope="module")
def ref_members(tmp_path_factory):
    """The members of a saved ref_cnn (layers.0.W is (32, 1, 3, 3) float32)."""
    path = tmp_path_factory.mktemp("ref") / "good.npz"
    nncore.save_model(nncore.ref_cnn(seed=0), path)
    return members_of(path)


@contextlib.contextmanager
def address_space_cap(extra_bytes):
    """Cap this process's address space at its current size plus ``extra_bytes`` (Linux), so that a
    loader that regressed to inflating a bomb fails with MemoryError instead of filling the machine."""
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    old = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def refused_cheaply(path, match, seconds=1.0, peak_bytes=32 * 2**20):
    """load_model(path) raises a one-line CorruptInputError matching ``match`` within ``seconds``,
    allocating at most ``peak_bytes`` (tracemalloc sees NumPy's allocations and zlib's buffers)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with address_space_cap(2 * GIB), pytest.raises(CorruptInputError, match=match) as exc:
            nncore.load_model(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(exc.value)
    assert elapsed < seconds, f"refused in {elapsed:.2f} s"
    assert peak < peak_bytes, f"allocated {peak / 2**20:.1f} MiB to refuse it"
    return str(exc.value)


# -- bombs and huge declarations -----------------------------------------------------------------------

def test_8_gb_zeros_bomb_under_a_real_parameter_is_refused_without_inflating(tmp_path, ref_members):
    bomb = zeros_bomb("layers.0.W.npy", "<f4", (8 * GIB // 36, 1, 3, 3))   # the right name and rank
    assert bomb.file_size > 8 * GIB and bomb.compress_size < 12 * 2**20
    write_zip(tmp_path / "bomb.npz", replace(ref_members, "layers.0.W.npy", bomb))
    refused_cheaply(tmp_path / "bomb.npz", "declares 8,589,934,... bytes, more than the 12,304")


def test_small_bomb_is_a_real_npz(tmp_path, ref_members):
    """The crafted bombs are valid archives (true sizes and CRC): numpy itself inflates a small one."""
    write_zip(tmp_path / "b.npz",
              replace(ref_members, "layers.0.W.npy", zeros_bomb("layers.0.W.npy", "<f4", (2**20, 3))))
    with np.load(tmp_path / "b.npz") as data:
        assert data["layers.0.W"].shape == (2**20, 3) and not data["layers.0.W"].any()
        assert data["layers.0.b"].shape == (32,)
    refused_cheaply(tmp_path / "b.npz", "more than the 12,304 it may hold")


def test_bomb_with_a_lying_small_declared_size_reads_only_what_it_declares(tmp_path, ref_members):
    """The zip claims the right size, the deflate stream holds 1 GB: zipfile stops at the declared size,
    and the CRC of those bytes refuses the file."""
    good_header = npy_header("<f4", (32, 1, 3, 3))
    bomb = zeros_bomb("layers.0.W.npy", "<f4", (GIB // 36, 1, 3, 3))
    liar = Member(bomb.name, list(bomb.chunks), len(good_header) + 32 * 9 * 4, bomb.compress_size, bomb.crc, DEFLATED)
    write_zip(tmp_path / "liar.npz", replace(ref_members, "layers.0.W.npy", liar))
    refused_cheaply(tmp_path / "liar.npz", "truncated or corrupt .*Bad CRC-32")


@pytest.mark.parametrize("key, shape, refused_for", [
    ("layers.0.W.npy", (2**40,), "has shape \\(1099511627776,\\) but Conv2D needs \\(32, 1, 3, 3\\)"),
    ("layers.0.W.npy", (2**40, 1, 3, 3), "has shape \\(1099511627776, 1, 3, 3\\) but Conv2D needs"),
    ("extra.opt.m.npy", (2**40,), "the extra arrays declare over"),
])
def test_header_declaring_2_40_floats(tmp_path, ref_members, key, shape, refused_for):
    """The zip entry holds the header and 64 bytes, and says so: the header's shape alone is refused."""
    header = npy_header("<f4", shape)
    write_zip(tmp_path / "h.npz", replace(ref_members, key, member(key, header + bytes(64))))
    refused_cheaply(tmp_path / "h.npz", refused_for)


@pytest.mark.parametrize("key", ["layers.0.W.npy", "extra.opt.m.npy", "__nncore__.npy"])
def test_zip_entry_declaring_4_tib(tmp_path, ref_members, key):
    """The entry also declares the 4 TiB its header needs (a deflate stream can hold that much):
    refused from the zip's central directory, before the member is opened."""
    header = npy_header("<f4", (2**40,))
    lie = member(key, header + bytes(64), file_size=len(header) + 4 * 2**40)
    write_zip(tmp_path / "h.npz", replace(ref_members, key, lie))
    refused_cheaply(tmp_path / "h.npz", "declares 4,398,046,511,... bytes, more than the")


def header_dict(members):
    """The JSON header held by a list of stored members."""
    raw = next(m for m in members if m.name == "__nncore__.npy").chunks[0]
    return json.loads(str(np.load(io.BytesIO(raw))))


def with_header(members, header):
    return replace(members, "__nncore__.npy", member("__nncore__.npy", npy_bytes(np.array(json.dumps(header)))))


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def test_huge_architecture_is_refused_before_building_it(tmp_path, ref_members):
    """Building Dense(10**6, 10**6) would allocate 8 TB for its random initialisation: counted from the config."""
    header = header_dict(ref_members)
    header["architecture"][-1] = {"type": "Dense", "in_features": 10**6, "out_features": 10**6, "bias": True}
    write_zip(tmp_path / "a.npz", with_header(ref_members, header))
    msg = refused_cheaply(tmp_path / "a.npz", "parameters and buffers, more than the 67,108,864")
    assert "has 1,000,001,4" in msg


def test_oversized_json_header_is_refused(tmp_path, ref_members):
    header = header_dict(ref_members)
    header["metadata"] = {"notes": "x" * (weights.MAX_HEADER_BYTES // 4)}
    write_zip(tmp_path / "big.npz", with_header(ref_members, header))
    refused_cheaply(tmp_path / "big.npz", "has a header of [0-9,]+ bytes, over the 4,194,304 limit")
    with pytest.raises(UsageError, match="store less metadata"):
        nncore.save_model(tiny_model(), tmp_path / "m.npz", metadata=header["metadata"])
    assert not (tmp_path / "m.npz").exists()


def test_extra_arrays_over_the_cap(tmp_path, ref_members):
    """A checkpoint's extras hold at most EXTRA_FACTOR times the model's bytes (+ EXTRA_SLACK)."""
    model_bytes = sum(a.nbytes for a in nncore.ref_cnn(seed=0).state_dict().values())
    n = (weights.EXTRA_FACTOR * model_bytes + weights.EXTRA_SLACK) // 8 + 1
    big = zeros_bomb("extra.opt.v.npy", "<f8", (n,))
    write_zip(tmp_path / "x.npz", replace(ref_members, big.name, big))
    refused_cheaply(tmp_path / "x.npz", "the extra arrays declare over")
    with pytest.raises(UsageError, match="extra arrays hold"):
        nncore.save_model(tiny_model(), tmp_path / "m.npz",
                          extra_arrays={"v": np.zeros(weights.EXTRA_SLACK // 8 + 10**4)})


# -- dtypes, orders, sizes, compression ----------------------------------------------------------------

@pytest.mark.parametrize("descr, words", [
    ("<i4", "has dtype <i4, not float16/32/64"), ("<c8", "not float16/32/64"), ("<f16", "not float16/32/64"),
    ("|O", "cannot be loaded safely"), ([("a", "<f4")], "not float16/32/64"), ("|V4", "not float16/32/64"),
])
def test_wrong_dtype_of_a_parameter(tmp_path, ref_members, descr, words):
    dtype = np.dtype(descr) if descr != "<f16" else np.dtype(np.longdouble)
    descr = descr if descr != "<f16" else dtype.str
    data = npy_header(descr, (32, 1, 3, 3)) + bytes(288 * dtype.itemsize)
    write_zip(tmp_path / "d.npz", replace(ref_members, "layers.0.W.npy", member("layers.0.W.npy", data)))
    refused_cheaply(tmp_path / "d.npz", words)


@pytest.mark.parametrize("descr", ["|O", "|V8", [("a", "<f4")], "<M8[s]"])
def test_extra_arrays_of_unsafe_or_odd_dtypes(tmp_path, ref_members, descr):
    data = npy_header(descr, (2,)) + bytes(16)
    write_zip(tmp_path / "e.npz", replace(ref_members, "extra.x.npy", member("extra.x.npy", data)))
    refused_cheaply(tmp_path / "e.npz", "cannot be loaded safely|extra arrays hold numbers or strings")


def test_fortran_order_and_big_endian_arrays_load_exactly(tmp_path):
    """Both are honest numpy arrays: they load with the same values numpy reads."""
    path = tmp_path / "m.npz"
    nncore.save_model(tiny_model(), path)
    members = members_of(path)
    w = np.random.default_rng(0).standard_normal((8, 3))
    fortran = np.asfortranarray(w.astype(np.float32))
    big_endian = np.random.default_rng(1).standard_normal((2, 1, 3, 3)).astype(">f8")
    members = replace(members, "layers.2.W.npy", member("layers.2.W.npy", npy_bytes(fortran)))
    members = replace(members, "layers.0.W.npy", member("layers.0.W.npy", npy_bytes(big_endian), method=DEFLATED))
    members = replace(members, "extra.f.npy", member("extra.f.npy", npy_bytes(np.asfortranarray(w))))
    write_zip(path, members)
    model, _, extra = nncore.load_model(path, return_extra=True)
    np.testing.assert_array_equal(model.layers[2].params["W"], fortran)
    np.testing.assert_array_equal(model.layers[0].params["W"], big_endian.astype(np.float32))
    np.testing.assert_array_equal(extra["f"], w)


@pytest.mark.parametrize("delta", [-1, 1, 4096])
def test_declared_zip_size_must_match_the_npy_header(tmp_path, ref_members, delta):
    """An honest zip entry (true size and CRC) whose bytes do not match what its .npy header declares."""
    data = npy_header("<f4", (32, 1, 3, 3)) + np.ones(288, np.float32).tobytes()
    lie = member("layers.0.W.npy", data[:delta] if delta < 0 else data + bytes(delta))
    write_zip(tmp_path / "s.npz", replace(ref_members, "layers.0.W.npy", lie))
    refused_cheaply(tmp_path / "s.npz",
                    f"is {len(data) + delta:,} bytes in the zip, but its header .* needs {len(data):,}")


def test_wrong_crc_is_corrupt(tmp_path, ref_members):
    data = npy_header("<f4", (32, 1, 3, 3)) + np.ones(288, np.float32).tobytes()
    write_zip(tmp_path / "c.npz", replace(ref_members, "layers.0.W.npy",
                                          member("layers.0.W.npy", data, method=DEFLATED, crc=12345)))
    refused_cheaply(tmp_path / "c.npz", "truncated or corrupt .*CRC")


@pytest.mark.parametrize("method, flags, words", [(12, 0, "compression method 12"), (14, 0, "compression method 14"),
                                                  (STORED, 1, "encrypted")])
def test_unboundable_compression_and_encryption_are_refused(tmp_path, ref_members, method, flags, words):
    """bzip2 (12) and lzma (14) decompressors cannot be told to stop early: a member that uses them
    could inflate without bound inside one call, so they are refused from the central directory."""
    m = member("layers.0.W.npy", npy_header("<f4", (32, 1, 3, 3)) + bytes(1152))
    m.method, m.flags = method, flags
    write_zip(tmp_path / "z.npz", replace(ref_members, m.name, m))
    refused_cheaply(tmp_path / "z.npz", words)


def test_a_huge_zip_directory_is_refused_before_zipfile_parses_it(tmp_path, ref_members):
    """150,000 empty entries (a 21 MB file, zip64 end record): zipfile would spend seconds and ~80 MB
    on their ZipInfo objects; the end record's declared directory size refuses the file first."""
    write_zip(tmp_path / "many.npz", ref_members + [member(f"x{i}.npy", b"") for i in range(150_000)])
    refused_cheaply(tmp_path / "many.npz", "declares a zip directory of 12,6..,... bytes, more than the 2,097,152")


def test_the_same_array_twice_is_refused(tmp_path, ref_members):
    twice = ref_members + [member("layers.0.W", npy_bytes(np.zeros((32, 1, 3, 3), np.float32)))]
    write_zip(tmp_path / "t.npz", twice)
    refused_cheaply(tmp_path / "t.npz", "holds array 'layers.0.W' twice")


@pytest.mark.parametrize("raw, words", [
    (npy_header("<f4", (32, 1, 3, 3), version=(3, 0)), "format version 3.0"),
    (npy_header("<f4", (32, 1, 3, 3), text="{'descr': '<f4', 'shape': (32,"), "truncated or corrupt"),
    (npy_header(None, (), text="(" * 5000), "truncated or corrupt"),
    (b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 100, "truncated or corrupt"),
    (b"\x93NUMPY\x02\x00\xff\xff\xff\x7f" + b" " * 100, "over the 10,000 limit"),
    (b"PK not npy at all", "magic string is not correct"),
])
def test_damaged_npy_headers(tmp_path, ref_members, raw, words):
    write_zip(tmp_path / "n.npz", replace(ref_members, "layers.0.W.npy", member("layers.0.W.npy", raw)))
    refused_cheaply(tmp_path / "n.npz", words)


# -- honest files ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist_cnn", "symbols_cnn"])
def test_shipped_weights_load_bit_for_bit(name):
    path = os.path.join(ROOT, "weights", f"{name}.npz")
    model = nncore.load_model(path)
    with np.load(path, allow_pickle=False) as data:
        stored = {k: data[k] for k in data.files if k.startswith("layers.")}
    state = model.state_dict()
    assert sorted(state) == sorted(stored)
    for key, arr in stored.items():
        assert state[key].tobytes() == arr.astype(model.dtype).tobytes(), key


def test_save_model_refuses_what_load_model_would(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="cannot|extra arrays hold numbers or strings"):
        nncore.save_model(tiny_model(), tmp_path / "o.npz", extra_arrays={"o": np.array([{}], dtype=object)})
    monkeypatch.setattr(weights, "MAX_SCALARS", 10)
    with pytest.raises(UsageError, match="weights files hold at most 10"):
        nncore.save_model(tiny_model(), tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


SAMPLE_LAYERS = {"Conv2D": (2, 3, 3), "ConvReLUPool": (2, 3, (3, 2)), "ConvBNReLUPool": (2, 3, (3, 2)),
                 "MaxPool2D": (2,), "AvgPool2D": (2,), "Dense": (4, 3), "DenseBNReLUDropout": (4, 3, 0.5),
                 "ReLU": (), "LeakyReLU": (0.1,), "Dropout": (0.5,), "BatchNorm": (4,), "Flatten": ()}


@pytest.mark.parametrize("bias", [True, False])
def test_declared_scalars_counts_every_layer_type_exactly(bias):
    """The architecture is sized from the configs alone; a new layer type with arrays must be counted too."""
    assert sorted(SAMPLE_LAYERS) == sorted(LAYERS)
    for name, args in SAMPLE_LAYERS.items():
        layer = LAYERS[name](*args, **({"bias": bias} if name in ("Conv2D", "ConvReLUPool", "Dense") else {}))
        actual = sum(int(np.prod(r.value.shape)) for r in layer.named_arrays())
        assert weights.declared_scalars({"type": name, **layer.config()}) == actual, name


# -- properties: crafted headers and damaged bytes --------------------------------------------------------

TINY_KEYS = {"layers.0.W": (2, 1, 3, 3), "layers.0.b": (2,), "layers.2.W": (8, 3), "layers.2.b": (3,)}
FLOAT_DESCRS = ["<f4", ">f4", "<f8", ">f8", "<f2"]
OTHER_DESCRS = ["<i4", "|u1", "|b1", "|O", "<c8", "<U3", "|S2", "|V8", "<M8[s]", np.dtype(np.longdouble).str,
                [("a", "<f4")], [("a", "|O")]]
DAMAGED_TEXT = ["{", "[1, 2]", "{'descr': '<f4'}", "((((((((((((((((",
                "{'descr': '<f4', 'fortran_order': 1, 'shape': (2,)}",
                "{'descr': 'zz', 'fortran_order': False, 'shape': (2,)}", "{'descr': '<f4', 'fortran_order': False, "
                "'shape': (2, 'x')}", "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}", "\x00\xff" * 40]
SIDES = st.sampled_from([0, 1, 2, 3, 8, -1, 2**31, 2**40, 2**62])


@pytest.fixture(scope="module")
def tiny_members(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    nncore.save_model(tiny_model(), path)
    return members_of(path)


@st.composite
def crafted_members(draw):
    """One array member with a crafted header and data, and the array it must load as (None: refused).

    Half of the members are well formed (the other half carry one or more kinds of damage), and half
    use the expected shape, so that both outcomes are common.
    """
    key = draw(st.sampled_from(sorted(TINY_KEYS) + ["extra.x"]))
    expected = TINY_KEYS.get(key)
    descr = draw(st.one_of(st.sampled_from(FLOAT_DESCRS), st.sampled_from(OTHER_DESCRS)))
    shape = draw(st.one_of(st.just(expected or (3, 2)), st.one_of(st.lists(SIDES, max_size=4).map(tuple),
                                                                 st.permutations(list(expected or (3, 2))).map(tuple))))
    fortran = draw(st.booleans())
    damage = draw(st.one_of(st.just(()), st.lists(st.sampled_from(["text", "version", "cut", "declared", "crc"]),
                                                  min_size=1, max_size=3, unique=True)))
    version = draw(st.sampled_from([(3, 0), (0, 9), (2, 1)])) if "version" in damage else draw(
        st.sampled_from([(1, 0), (2, 0)]))
    text = draw(st.sampled_from(DAMAGED_TEXT)) if "text" in damage else None
    cut = draw(st.sampled_from([-1, 1, -7])) if "cut" in damage else 0
    declared = draw(st.sampled_from([-1, 1, 2**33])) if "declared" in damage else 0
    method = draw(st.sampled_from([STORED, DEFLATED]))
    true_crc = "crc" not in damage
    seed = draw(st.integers(0, 2**32 - 1))

    dtype = np.dtype(descr) if not isinstance(descr, list) else np.dtype([tuple(f) for f in descr])
    header = npy_header(descr, shape, fortran, version, text)
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if min(shape, default=0) >= 0 else -1
    span = int(np.prod([max(d, 1) for d in shape], dtype=object)) * dtype.itemsize  # (0, 2**62) is no array
    small = nbytes >= 0 and span <= 2**16
    rng = np.random.default_rng(seed)
    if small and dtype.kind == "f" and dtype.itemsize <= 8:  # finite values: a parameter may be any of them
        payload = rng.standard_normal(nbytes // dtype.itemsize).astype(dtype).tobytes()
    else:
        payload = rng.bytes(max(0, min(nbytes, 2**16)))
    data = header + payload
    data = data[:cut] if cut < 0 else data + bytes(cut)
    m = member(key + ".npy", data, method=method, file_size=len(data) + declared,
               crc=None if true_crc else 1234)
    well_formed = text is None and version in ((1, 0), (2, 0)) and cut == 0 and declared == 0 and true_crc and small
    if key == "extra.x":
        fits = dtype.kind in "biufcSU" and dtype.fields is None and dtype.itemsize > 0
    else:
        fits = shape == expected and dtype.kind == "f" and dtype.itemsize in (2, 4, 8)
    want = None
    if well_formed and fits:
        flat = np.frombuffer(payload, dtype)
        want = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return key, m, want


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(crafted_members())
def test_any_crafted_array_header_loads_exactly_or_is_refused_in_one_line(tiny_members, crafted):
    """Either the member is well formed and fits (then it loads with exactly its values) or the file is
    refused with one CorruptInputError line; in under a second either way, never another exception."""
    key, m, want = crafted
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w.npz")
        write_zip(path, replace(tiny_members, m.name, m))
        start = time.perf_counter()
        try:
            model, _, extra = nncore.load_model(path, return_extra=True)
        except CorruptInputError as exc:
            assert str(exc) and "\n" not in str(exc)
            assert want is None, f"an honest file was refused: {exc}"
            event("refused")
            return
        finally:
            assert time.perf_counter() - start < 1.0
    assert want is not None, "a malformed file was loaded"
    event("loaded")
    got = extra["x"] if key == "extra.x" else model.state_dict()[key]
    assert got.shape == want.shape
    assert got.tobytes() == np.ascontiguousarray(want.astype(got.dtype)).tobytes()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.booleans(),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4))
def test_any_damaged_bytes_load_or_are_refused_in_one_line(tmp_path, compressed, flips):
    """Flip a few bytes anywhere in a real file (stored or compressed): never anything but CorruptInputError."""
    path = tmp_path / "w.npz"
    model = tiny_model()
    if compressed:
        arrays = model.state_dict()
        arrays["__nncore__"] = np.array(json.dumps(weights._header_dict(model, {})))
        np.savez_compressed(path, **arrays)
    else:
        nncore.save_model(model, path)
    raw = bytearray(path.read_bytes())
    for where, value in flips:
        raw[int(where * len(raw))] = value
    path.write_bytes(bytes(raw))
    try:
        nncore.load_model(path)
    except CorruptInputError as exc:
        assert str(exc) and "\n" not in str(exc)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                           max_leaves=6)
HEADER_PATHS = st.sampled_from([
    ("format",), ("version",), ("architecture",), ("input_shape",), ("class_names",), ("symbols",), ("input_scaling",),
    ("dtype",), ("architecture", 0), ("architecture", 0, "type"), ("architecture", 0, "in_channels"),
    ("architecture", 0, "kernel_size"), ("architecture", 0, "padding"), ("architecture", 0, "stride"),
    ("architecture", 1, "type"), ("architecture", 2, "in_features"), ("architecture", 2, "out_features"),
    ("input_shape", 0), ("input_scaling", "mean"), ("input_scaling", "std"), ("class_names", 0)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(HEADER_PATHS, JSON_VALUES), min_size=1, max_size=3))
def test_any_edited_json_header_loads_a_working_model_or_is_refused_in_one_line(tiny_members, changes):
    """Any value in any field of the header: a model that predicts finite probabilities, or one
    CorruptInputError line; never a traceback, a NaN or a warning."""
    header = header_dict(tiny_members)
    for path, value in changes:
        target = header
        with contextlib.suppress(KeyError, IndexError, TypeError):
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("error")
        path = os.path.join(tmp, "w.npz")
        write_zip(path, with_header(tiny_members, header))
        try:
            model = nncore.load_model(path)
        except CorruptInputError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
        if model.input_shape == (1, 4, 4):
            assert np.isfinite(model.predict_proba(np.full((2, 4, 4), 200, np.uint8))).all()


# -- the scripts ---------------------------------------------------------------------------------------------

def test_classify_refuses_the_8_gb_bomb_with_exit_4_in_one_line(tmp_path, ref_members):
    write_zip(tmp_path / "bomb.npz", replace(ref_members, "layers.0.W.npy",
                                             zeros_bomb("layers.0.W.npy", "<f4", (8 * GIB // 36, 1, 3, 3))))
    from PIL import Image
    Image.new("L", (28, 28), 255).save(tmp_path / "img.png")

    def cap_memory():  # a regression fails here with MemoryError rather than filling the machine
        resource.setrlimit(resource.RLIMIT_AS, (4 * GIB, resource.RLIM_INFINITY))

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "classify.py"), "--weights", "bomb.npz",
                           "img.png"], cwd=tmp_path, capture_output=True, text=True, timeout=60, preexec_fn=cap_memory)
    elapsed = time.perf_counter() - start
    assert proc.returncode == CorruptInputError.exit_code == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bomb.npz: array 'layers.0.W' declares 8,589,934,"), lines
    assert elapsed < 3.0, f"{elapsed:.1f} s, Python start included"
