"""Stub of slimnn._C, the private extension (csrc/bindings). Tensors cross as integer data pointers and
sizes; the Python layer checks dtypes, shapes and lifetimes. tests/test_stub.py fails when the built
module and this file differ (names, parameters, defaults), so edit both together."""

from collections.abc import Sequence

def act_apply(kernel: str, act: int, y: int, n: int) -> None:
    """Test hook: applies activation code `act` in place to n floats at y with the named kernel."""
def act_kernels() -> list[dict[str, object]]: ...
def all_kernels() -> list[dict[str, object]]:
    """Every kernel of the build (all families but the activations), best first per kind."""
def attention_exp(x: int, y: int, n: int, kernel: str = '') -> str:
    """y[i] = exp(x[i]) with the attention kernel's polynomial (fp32). Returns the kernel used."""
def attention_f32(
    sizes: Sequence[int],
    q: int,
    q_strides: Sequence[int],
    k: int,
    k_strides: Sequence[int],
    v: int,
    v_strides: Sequence[int],
    out: int,
    out_strides: Sequence[int],
    mask_kind: int,
    mask: int,
    mask_strides: Sequence[int],
    causal: bool,
    scale: float,
    nthreads: int,
    kernel: str = '',
) -> str:
    """out = softmax(q k^T * scale + mask) v over fp32 [b, h, l, d] views given by element strides of their
    first three dims (last dim contiguous). Returns the kernel used."""
def attention_kernels() -> list[dict[str, object]]: ...
def attention_select_kernel() -> str: ...
def bitmap_dots(kernel: str, blob: int, size: int, xq: int, m: int, dots: int) -> None:
    """Test hook: int32 dots [m][n] of one kernel; xq is [m][x_stride] uint8 (kc * 64, or K rounded up to 256
    for group_rows 8)."""
def bitmap_kernels() -> list[dict[str, object]]: ...
def bitmap_select(m: int) -> str: ...
def built_isa_mask() -> int: ...
def cpu_id() -> dict[str, object]: ...
def current_isa_mask() -> int: ...
def detected_isa_mask() -> int: ...
def force_isa(name: str) -> None: ...
def isa_bit(name: str) -> int: ...
def isa_names() -> list[str]: ...
def kernels() -> list[dict[str, object]]: ...
def lowrank_check_csr(n: int, k: int, nnz: int, rowptr: int, col: int, val: int) -> None: ...
def lowrank_f32_linear(
    x: int,
    rows: int,
    ldx: int,
    n: int,
    k: int,
    r: int,
    u: int,
    v: int,
    bias: int,
    y: int,
    ldy: int,
    nthreads: int,
    kernel: str = '',
    rowptr: int = 0,
    col: int = 0,
    val: int = 0,
    nnz: int = 0,
) -> str:
    """y = (x V^T) U^T + bias (+ x S^T); U is n x r, V is r x k, fp32 row-major. Returns the kernel used."""
def lowrank_kernels() -> list[dict[str, object]]: ...
def lowrank_q8_linear(
    kind: str,
    x: int,
    rows: int,
    ldx: int,
    v_blob: int,
    v_size: int,
    u_blob: int,
    u_size: int,
    bias: int,
    y: int,
    ldy: int,
    nthreads: int,
    rowptr: int = 0,
    col: int = 0,
    val: int = 0,
    nnz: int = 0,
) -> str:
    """The int8-factor form: V and U are q8 blobs (r x k and n x r). Returns the qgemm kernel used."""
def lowrank_select_kernel(m: int) -> str: ...
def pool_worker_count() -> int: ...
def q4_blob_bytes(n: int, k: int, group_size: int, scale_dtype: int, asymmetric: bool) -> int: ...
def q4_dot_i32(kernel: str, a: int, rows: int, lda: int, blob: int, size: int, out: int) -> None:
    """out is rows x n_groups x np int32 (E_g); a is rows x kp uint8"""
def q4_header(blob: int, size: int, full_check: bool) -> tuple[int, int, int, int, int, int, int, bool]:
    """Validates a q4 blob; returns (n, k, group_size, n_groups, np, kp, scale_dtype, asymmetric)."""
def q4_kernels() -> list[dict[str, object]]: ...
def q4_linear(
    kind: str,
    x: int,
    x_bf16: bool,
    rows: int,
    ldx: int,
    in_mul: int,
    blob: int,
    size: int,
    bias: int,
    y: int,
    ldy: int,
    nthreads: int,
) -> str: ...
def q4_pack(
    codes: int,
    scales: int,
    zeros: int,
    n: int,
    k: int,
    group_size: int,
    scale_dtype: int,
    out: int,
    out_size: int,
) -> None: ...
def q4_select_kernel(kind: str, m: int) -> str: ...
def q4_unpack(blob: int, size: int, codes: int, scales: int, zeros: int) -> None: ...
def q8_blob_bytes(n: int, k: int, group_size: int) -> int: ...
def q8_dot_i32(kernel: str, a: int, rows: int, lda: int, blob: int, size: int, out: int) -> None:
    """out is rows x np int32; a is rows x kp uint8"""
def q8_header(blob: int, size: int, full_check: bool) -> tuple:
    """Validates a q8 blob and returns (n, k, group_size, n_groups, np, kp)."""
def q8_linear(
    kind: str,
    x: int,
    x_bf16: bool,
    rows: int,
    ldx: int,
    blob: int,
    size: int,
    bias: int,
    y: int,
    ldy: int,
    nthreads: int,
    act: int = 0,
    split: int = 0,
) -> str: ...
def q8_pack(q: int, scales: int, n: int, k: int, group_size: int, out: int, out_size: int) -> None: ...
def q8_unpack(blob: int, size: int, q: int, scales: int) -> None: ...
def quantize_rows_u8(
    kernel: str,
    x: int,
    rows: int,
    k: int,
    kp: int,
    q: int,
    scale: int,
    zp: int,
) -> list[bool]: ...
def select_act() -> str: ...
def select_kernel(kind: str, m: int) -> str: ...
def sparse_bitmap_bytes(w: int, n: int, k: int, group_rows: int = 0) -> int: ...
def sparse_bitmap_group_rows(w: int, n: int, k: int) -> int: ...
def sparse_bitmap_pack(
    w: int,
    scales: int,
    n: int,
    k: int,
    group_rows: int,
    out: int,
    out_size: int,
) -> None: ...
def sparse_bsr_bytes(w: int, values: str, n: int, k: int, r: int, c: int) -> int: ...
def sparse_bsr_pack(
    w: int,
    scales: int,
    values: str,
    n: int,
    k: int,
    r: int,
    c: int,
    out: int,
    out_size: int,
) -> None: ...
def sparse_csr_bytes(w: int, values: str, n: int, k: int, index_bits: int) -> int: ...
def sparse_csr_pack(
    w: int,
    scales: int,
    values: str,
    n: int,
    k: int,
    index_bits: int,
    out: int,
    out_size: int,
) -> None: ...
def sparse_info(blob: int, size: int, full_check: bool) -> dict[str, object]:
    """Validates a sparse blob and describes it (format, values, shape, nnz, bytes per section)."""
def sparse_linear(
    x: int,
    rows: int,
    k: int,
    ldx: int,
    blob: int,
    size: int,
    bias: int,
    y: int,
    n: int,
    ldy: int,
    nthreads: int,
    kernel: str = '',
) -> str: ...
def sparse_nm_bytes(values: str, n: int, k: int, nm_n: int, nm_m: int) -> int: ...
def sparse_nm_pack(
    w: int,
    scales: int,
    values: str,
    n: int,
    k: int,
    nm_n: int,
    nm_m: int,
    out: int,
    out_size: int,
) -> None: ...
def sparse_unpack(blob: int, size: int, w: int, scales: int) -> None:
    """w: N x K fp32 or int8 (the blob's values); scales: N fp32 (int8 only)."""
def spmm_kernels() -> list[dict[str, object]]: ...
def spmm_select(kind: str, m: int) -> str: ...
