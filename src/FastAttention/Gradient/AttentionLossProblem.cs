namespace FastAttention.Gradient;

/// <summary>A read-only row-major matrix view: data plus its shape, checked at construction.</summary>
public readonly record struct DenseMatrix
{
    /// <summary>Wraps <paramref name="data"/> as a <paramref name="rows"/>×<paramref name="cols"/> row-major matrix.</summary>
    public DenseMatrix(ReadOnlyMemory<double> data, int rows, int cols)
    {
        if (rows < 1 || cols < 1)
            throw new ArgumentOutOfRangeException(nameof(rows), $"a matrix needs at least one row and one column (got {rows}×{cols}).");
        if (data.Length != (long)rows * cols)
            throw new ArgumentException($"the data has {data.Length} elements but the shape {rows}×{cols} needs {(long)rows * cols}.", nameof(data));
        Data = data; Rows = rows; Cols = cols;
    }

    /// <summary>The elements, row-major: (i, j) at i·<see cref="Cols"/> + j.</summary>
    public ReadOnlyMemory<double> Data { get; }
    /// <summary>Number of rows, ≥ 1.</summary>
    public int Rows { get; }
    /// <summary>Number of columns, ≥ 1.</summary>
    public int Cols { get; }
    /// <summary>The elements as a span (row-major).</summary>
    public ReadOnlySpan<double> Span => Data.Span;
    /// <summary>Row <paramref name="i"/> (0-based) as a span of <see cref="Cols"/> elements; throws when i is out of range.</summary>
    public ReadOnlySpan<double> Row(int i) => Data.Span.Slice(i * Cols, Cols);
    /// <summary>The shape as "rows×cols", for messages.</summary>
    public string ShapeText => $"{Rows}×{Cols}";
}

/// <summary>
/// Gupta et al. Def. B.1 (attention optimization, after Alman–Song 2024b): given A₁, E ∈ ℝ^{n×d}, A₂, A₃ ∈ ℝ^{m×d}
/// and X, Y ∈ ℝ^{d×d}, L(X) = ½‖D(X)⁻¹·A·V − E‖²_F with A = exp(s·A₁XA₂ᵀ), V = A₃Y, D(X) = diag(A·1).
/// The paper has m = n and s = 1; here m may differ from n and the logit scale s is explicit (default 1, the paper's).
/// Immutable; every shape is validated at construction and a mismatch names the argument.
/// </summary>
public sealed class AttentionLossProblem
{
    /// <summary>Validates and wraps the six matrices (not copied).</summary>
    /// <param name="a1">A₁, n×d.</param>
    /// <param name="a2">A₂, m×d (the keys of every oracle call).</param>
    /// <param name="a3">A₃, m×d (V = A₃·Y).</param>
    /// <param name="e">E, n×d, the target of the loss.</param>
    /// <param name="x">X, d×d, the variable the gradient is taken in.</param>
    /// <param name="y">Y, d×d.</param>
    /// <param name="scale">The logit scale s (finite; the paper's is 1).</param>
    /// <exception cref="ArgumentException">A shape disagrees with A₁'s n×d (the message names the matrix and both
    /// shapes), the scale is not finite, or an entry is NaN or infinite.</exception>
    public AttentionLossProblem(DenseMatrix a1, DenseMatrix a2, DenseMatrix a3, DenseMatrix e, DenseMatrix x, DenseMatrix y, double scale = 1.0)
    {
        int n = a1.Rows, d = a1.Cols;
        if (n < 1 || d < 1)
            throw new ArgumentException($"a1 must be a non-empty n×d matrix (got {a1.ShapeText}).", nameof(a1));
        if (a2.Rows < 1)
            throw new ArgumentException($"a2 must have at least one row (got {a2.ShapeText}).", nameof(a2));
        if (a2.Cols != d)
            throw new ArgumentException($"a2 is {a2.ShapeText} but must have d = {d} columns like a1 ({a1.ShapeText}).", nameof(a2));
        if (a3.Rows != a2.Rows)
            throw new ArgumentException($"a3 is {a3.ShapeText} but must have m = {a2.Rows} rows like a2 ({a2.ShapeText}).", nameof(a3));
        if (a3.Cols != d)
            throw new ArgumentException($"a3 is {a3.ShapeText} but must have d = {d} columns like a1 ({a1.ShapeText}).", nameof(a3));
        if (e.Rows != n || e.Cols != d)
            throw new ArgumentException($"e is {e.ShapeText} but must be n×d = {n}×{d} like a1.", nameof(e));
        if (x.Rows != x.Cols)
            throw new ArgumentException($"x must be square d×d (got {x.ShapeText}).", nameof(x));
        if (x.Rows != d)
            throw new ArgumentException($"x is {x.ShapeText} but must be d×d = {d}×{d} (d is a1's column count).", nameof(x));
        if (y.Rows != y.Cols)
            throw new ArgumentException($"y must be square d×d (got {y.ShapeText}).", nameof(y));
        if (y.Rows != d)
            throw new ArgumentException($"y is {y.ShapeText} but must be d×d = {d}×{d} (d is a1's column count).", nameof(y));
        if (!double.IsFinite(scale))
            throw new ArgumentException($"the scale must be a finite number (got {scale}).", nameof(scale));
        CheckFinite(a1, nameof(a1)); CheckFinite(a2, nameof(a2)); CheckFinite(a3, nameof(a3));
        CheckFinite(e, nameof(e)); CheckFinite(x, nameof(x)); CheckFinite(y, nameof(y));
        A1 = a1; A2 = a2; A3 = a3; E = e; X = x; Y = y; Scale = scale;
    }

    /// <summary>A₁, n×d: A₁X are the queries.</summary>
    public DenseMatrix A1 { get; }
    /// <summary>A₂, m×d: the keys.</summary>
    public DenseMatrix A2 { get; }
    /// <summary>A₃, m×d: V = A₃Y are the values.</summary>
    public DenseMatrix A3 { get; }
    /// <summary>E, n×d: the loss's target.</summary>
    public DenseMatrix E { get; }
    /// <summary>X, d×d: the variable of L(X).</summary>
    public DenseMatrix X { get; }
    /// <summary>Y, d×d.</summary>
    public DenseMatrix Y { get; }
    /// <summary>The logit scale s in A = exp(s·A₁XA₂ᵀ) (Gupta et al. use 1, Alman–Song 1/d).</summary>
    public double Scale { get; }
    /// <summary>Rows of A₁ and E (queries).</summary>
    public int N => A1.Rows;
    /// <summary>Rows of A₂ and A₃ (keys); the paper has m = n.</summary>
    public int M => A2.Rows;
    /// <summary>d: columns of A₁, A₂, A₃, E and the order of X and Y.</summary>
    public int D => A1.Cols;

    /// <summary>The papers' entry bound B: the largest |entry| over A₁, A₂, A₃, E, X, Y.</summary>
    public double EntryBound => new[] { A1, A2, A3, E, X, Y }.Max(MaxAbs);

    /// <summary>Q = A₁·X (n×d), the query matrix of every oracle call Attention(A₁X, A₂, ·).</summary>
    public double[] Queries() => Multiply(A1, X);

    /// <summary>Gupta et al. Def. B.4: h(y) = A₃·Y (m×d), the value matrix V.</summary>
    public double[] Values() => Multiply(A3, Y);

    internal static double MaxAbs(DenseMatrix a) => Numerics.FloatingPoint.MaxAbs<double>(a.Span);

    /// <summary>Row-major product of a (r×k) and b (k×c), compensated dot products: O(r·k·c).</summary>
    internal static double[] Multiply(DenseMatrix a, DenseMatrix b)
    {
        var result = new double[a.Rows * b.Cols];
        var col = new double[b.Rows];
        var bs = b.Span;
        for (int j = 0; j < b.Cols; j++)
        {
            for (int k = 0; k < b.Rows; k++) col[k] = bs[k * b.Cols + j];
            for (int i = 0; i < a.Rows; i++)
                result[i * b.Cols + j] = Numerics.CompensatedSum.Dot(a.Row(i), col);
        }
        return result;
    }

    private static void CheckFinite(DenseMatrix a, string name)
    {
        var s = a.Span;
        for (int i = 0; i < s.Length; i++)
            if (!double.IsFinite(s[i]))
                throw new ArgumentException($"{name} contains a non-finite value ({s[i]}) at flat index {i}.", name);
    }
}
