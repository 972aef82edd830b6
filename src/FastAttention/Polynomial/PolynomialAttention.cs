using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace FastAttention.Polynomial;

/// <summary>
/// Alman–Song Algorithm 1 ("polynomial"): A ≈ Ã = U₁U₂ᵀ = P(s·QKᵀ) with a low-degree polynomial P of exp
/// (Cor. 2.2, Lemma 3.2), then w̃ = U₁(U₂ᵀ1), T = diag(w̃)⁻¹·U₁(U₂ᵀV) in O((n + m)·r·(d + dv)) time. U₁ and U₂ are
/// never stored: they are produced chunk by chunk (r×chunk), so the extra memory is O(workers·r·chunk + blocks·r·dv)
/// and there is no n×m (nor n×r) buffer. Causal attention uses prefix sums of U₂ⱼᵀ[Vⱼ, 1] over keys, in either
/// alignment (query i sees keys j ≤ i + o, o = 0 top-left or m − n bottom-right; a row that sees no key gets zeros).
/// Certified: ‖T − Att‖∞ ≤ ε including float64 rounding (<see cref="ErrorBudget"/>); refuses when the rank would
/// exceed <see cref="MaxRank"/> or float64 cannot certify ε on the logit interval.
/// </summary>
public sealed class PolynomialAttention : AttentionAlgorithm, ISupportsCausalAlignment
{
    /// <summary>The default rank budget.</summary>
    public const int DefaultMaxRank = 8192;

    /// <summary><c>"polynomial"</c>: Alman–Song Algorithm 1, certified within ε.</summary>
    public override string Name => "polynomial";
    /// <summary>False: needs ε in (0, 1); the output is within ε of Att in ‖·‖∞, or the call refuses.</summary>
    public override bool IsExact => false;

    /// <summary>The largest rank r = C(g + d, d) the method accepts before refusing.</summary>
    public int MaxRank { get; init; } = DefaultMaxRank;

    /// <inheritdoc/>
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
    {
        double epsilon = context.Epsilon;
        if (!(epsilon < 1))
            ThrowHelper.Refused(Name, RefusalReason.EpsilonInvalid,
                $"ε = {epsilon:G3} ≥ 1 is refused: the certificate (Lemmas 3.5–3.6) is stated for ε in (0, 1); ask for ε < 1.", "exact");
        if (MaxRank < 1) ThrowHelper.ArgumentOutOfRange(nameof(MaxRank), $"the rank budget must be at least 1 (got {MaxRank}).");
        var plan = PolynomialPlan.Create(HeadStats.Measure(head), epsilon, MaxRank);
        return Planned(head, context, plan.Parameters(), plan.Budget.Terms, plan.Cost, plan);
    }

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan headPlan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        var plan = (PolynomialPlan)headPlan.State!;
        var opts = new ParallelOptions { MaxDegreeOfParallelism = context.Threads, CancellationToken = context.Cancellation };
        if (output.Length != head.N * head.Dv) ThrowHelper.Argument(nameof(output), $"output has {output.Length} elements, expected n·dv = {head.N * head.Dv}.");
        unsafe
        {
            // The kernels run in parallel lambdas, which cannot capture a span: pass the pinned address instead.
            fixed (T* p = output)
            {
                var dst = new Output<T>(p);
                if (head.Causal) Causal(plan, head.QMemory, head.KMemory, head.VMemory, head.CausalOffset, dst, opts);
                else NonCausal(plan, head.QMemory, head.KMemory, head.VMemory, dst, opts);
            }
        }
        return new HeadExecution(plan.Budget.Terms, headPlan.Parameters);
    }

    /// <summary>The pinned output (n×dv, row-major); valid only inside <see cref="ExecuteHead"/>'s fixed block.</summary>
    private readonly unsafe struct Output<T>(T* p) where T : unmanaged
    {
        private readonly T* _p = p;
        public T this[int i] { set => _p[i] = value; }
    }

    /// <summary>Per-worker buffers (structure-of-arrays, chunk rows per column).</summary>
    private sealed class Scratch(int r, int d, int dv, int chunk, bool causal)
    {
        public readonly double[] X = new double[d * chunk];
        public readonly double[] F = causal ? [] : new double[r * chunk];
        public readonly double[] Vc = Ones(dv, chunk); // columns of V, then a column of ones (U₂ᵀ1)
        public readonly double[] Acc = new double[(dv + 1) * chunk];
        public readonly double[] Rows = causal ? new double[chunk * r] : [];  // query features φ, row-major
        public readonly double[] RowsK = causal ? new double[chunk * r] : []; // key monomials ψ, row-major

        private static double[] Ones(int dv, int chunk)
        {
            var a = new double[(dv + 1) * chunk];
            a.AsSpan(dv * chunk, chunk).Fill(1.0);
            return a;
        }
    }

    /// <summary>Scaled inputs, column-major: x[i·chunk + j] = σ·src[(row0 + j)·d + i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LoadScaled<T>(ReadOnlySpan<T> src, int row0, int rows, int d, double sigma, double[] x, int chunk)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var s = src.Slice(row0 * d, rows * d);
        for (int j = 0; j < rows; j++)
            for (int i = 0; i < d; i++)
                x[i * chunk + j] = sigma * double.CreateTruncating(s[j * d + i]);
    }

    /// <summary>
    /// Algorithm 1 lines 7 and 9 on keys [lo, hi): s[c·r + α] += Σ_j ψ_α(kⱼ)·V_jc and s[dv·r + α] += Σ_j ψ_α(kⱼ),
    /// i.e. U₂ᵀ[V, 1] (without the coefficients, which go on the query side).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KeySums<T>(PolynomialPlan plan, ReadOnlySpan<T> k, ReadOnlySpan<T> v, int lo, int hi, Scratch sc, double[] s)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var f = plan.Factors;
        int r = f.Rank, d = plan.Stats.D, dv = plan.Stats.Dv, chunk = plan.Chunk;
        for (int c0 = lo; c0 < hi; c0 += chunk)
        {
            int len = Math.Min(chunk, hi - c0);
            LoadScaled(k, c0, len, d, f.KeyScale, sc.X, chunk);
            f.Monomials(sc.X, len, chunk, sc.F);
            var vs = v.Slice(c0 * dv, len * dv);
            for (int j = 0; j < len; j++)
                for (int c = 0; c < dv; c++)
                    sc.Vc[c * chunk + j] = double.CreateTruncating(vs[j * dv + c]);
            Kernels.AccumulateKeySums(sc.F, sc.Vc, r, dv + 1, chunk, len, s);
        }
    }

    /// <summary>Σ over key blocks of U₂ᵀ[V, 1], block sums in parallel, added in block order (deterministic).</summary>
    private static double[][] BlockSums<T>(PolynomialPlan plan, ReadOnlyMemory<T> k, ReadOnlyMemory<T> v, int keys, int blocks, ParallelOptions opts)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var ranges = new (int Lo, int Hi)[blocks];
        for (int b = 0; b < blocks; b++) ranges[b] = (b * PolynomialPlan.Block, Math.Min(keys, (b + 1) * PolynomialPlan.Block));
        return RangeSums(plan, k, v, ranges, opts);
    }

    /// <summary>U₂ᵀ[V, 1] over each key range (at most one block long), in parallel.</summary>
    private static double[][] RangeSums<T>(PolynomialPlan plan, ReadOnlyMemory<T> k, ReadOnlyMemory<T> v, (int Lo, int Hi)[] ranges, ParallelOptions opts)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int r = plan.Factors.Rank, d = plan.Stats.D, dv = plan.Stats.Dv;
        var partial = new double[ranges.Length][];
        Parallel.For(0, ranges.Length, opts, () => new Scratch(r, d, dv, plan.Chunk, false), (b, _, sc) =>
        {
            var s = new double[(dv + 1) * r];
            var (lo, hi) = ranges[b];
            if (lo < hi) KeySums(plan, k.Span, v.Span, lo, hi, sc, s);
            partial[b] = s;
            return sc;
        }, _ => { });
        return partial;
    }

    /// <summary>Algorithm 1: T = diag(U₁(U₂ᵀ1))⁻¹·U₁(U₂ᵀV).</summary>
    private static void NonCausal<T>(PolynomialPlan plan, ReadOnlyMemory<T> q, ReadOnlyMemory<T> k, ReadOnlyMemory<T> v, Output<T> output, ParallelOptions opts)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var f = plan.Factors;
        int n = plan.Stats.N, m = plan.Stats.M, d = plan.Stats.D, dv = plan.Stats.Dv, r = f.Rank, chunk = plan.Chunk;
        int keyBlocks = (m + PolynomialPlan.Block - 1) / PolynomialPlan.Block;
        var partial = BlockSums(plan, k, v, m, keyBlocks, opts);
        var s = partial[0];
        for (int b = 1; b < keyBlocks; b++) TensorPrimitives.Add(s, partial[b], s);
        // The coefficients a_{|α|}·multinomial(α) of φ (Lemma 3.2), applied once to the r×(dv + 1) sums.
        for (int c = 0; c <= dv; c++) TensorPrimitives.Multiply(s.AsSpan(c * r, r), f.Coefficients, s.AsSpan(c * r, r));
        int queryBlocks = (n + PolynomialPlan.Block - 1) / PolynomialPlan.Block;
        Parallel.For(0, queryBlocks, opts, () => new Scratch(r, d, dv, chunk, false), (b, _, sc) =>
        {
            QueryBlock(plan, q.Span, s, b, sc, output);
            return sc;
        }, _ => { });
    }

    /// <summary>Algorithm 1 lines 7–11 for the queries of block b: T = diag(U₁(U₂ᵀ1))⁻¹·U₁(U₂ᵀV), s = coef ⊙ U₂ᵀ[V, 1].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QueryBlock<T>(PolynomialPlan plan, ReadOnlySpan<T> qs, double[] s, int b, Scratch sc, Output<T> output)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var f = plan.Factors;
        int n = plan.Stats.N, d = plan.Stats.D, dv = plan.Stats.Dv, r = f.Rank, chunk = plan.Chunk;
        int lo = b * PolynomialPlan.Block, hi = Math.Min(n, lo + PolynomialPlan.Block);
        for (int c0 = lo; c0 < hi; c0 += chunk)
        {
            int len = Math.Min(chunk, hi - c0);
            LoadScaled(qs, c0, len, d, f.QueryScale, sc.X, chunk);
            f.Monomials(sc.X, len, chunk, sc.F);
            // Lines 7 and 10: U₁·(U₂ᵀ[V, 1]) for this chunk of queries.
            Kernels.ContractQueries(sc.F, s, r, dv + 1, chunk, len, sc.Acc);
            // Lines 8 and 11: divide by w̃.
            var wt = new ReadOnlySpan<double>(sc.Acc, dv * chunk, len);
            for (int c = 0; c < dv; c++)
            {
                var col = new Span<double>(sc.Acc, c * chunk, len);
                TensorPrimitives.Divide(col, wt, col); // one correctly rounded division per entry, vectorised
            }
            for (int j = 0; j < len; j++)
            {
                int o = (c0 + j) * dv;
                for (int c = 0; c < dv; c++) output[o + c] = T.CreateTruncating(sc.Acc[c * chunk + j]);
            }
        }
    }

    /// <summary>
    /// Causal Algorithm 1: query i uses S_i = Σ_{j ≤ i + o} ψ(kⱼ)[Vⱼ, 1]ᵀ (o the causal offset), streamed row by row.
    /// Rows are cut into blocks; pass 1 sums, in parallel pieces of at most a block of keys, the keys each block's first
    /// row sees beyond the previous block's, a prefix over blocks gives each block its start, pass 2 streams within
    /// blocks (O(r·(dv + 1)) state per block) — O((n + m)·r·dv) time.
    /// </summary>
    private static void Causal<T>(PolynomialPlan plan, ReadOnlyMemory<T> q, ReadOnlyMemory<T> k, ReadOnlyMemory<T> v, int offset, Output<T> output, ParallelOptions opts)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var f = plan.Factors;
        int n = plan.Stats.N, m = plan.Stats.M, d = plan.Stats.D, dv = plan.Stats.Dv, r = f.Rank, chunk = plan.Chunk;
        int blocks = (n + PolynomialPlan.Block - 1) / PolynomialPlan.Block;
        // Pass 1: block b's first row sees keys [0, start_b), start_b = clamp(b·Block + o, 0, m).
        var ranges = new List<(int Lo, int Hi)>();
        var slot = new List<int>();
        int prev = 0;
        for (int b = 0; b < blocks; b++)
        {
            int start = (int)Math.Clamp((long)b * PolynomialPlan.Block + offset, 0, m);
            for (int lo = prev; lo < start; lo += PolynomialPlan.Block) { ranges.Add((lo, Math.Min(start, lo + PolynomialPlan.Block))); slot.Add(b); }
            prev = Math.Max(prev, start);
        }
        var partial = RangeSums(plan, k, v, ranges.ToArray(), opts);
        var prefix = new double[blocks][];
        for (int b = 0, t = 0; b < blocks; b++)
        {
            prefix[b] = b == 0 ? new double[(dv + 1) * r] : (double[])prefix[b - 1].Clone();
            for (; t < slot.Count && slot[t] == b; t++) TensorPrimitives.Add(prefix[b], partial[t], prefix[b]);
        }
        var coef = f.Coefficients.ToArray();
        // Pass 2: stream each block from its prefix.
        Parallel.For(0, blocks, opts, () => new Scratch(r, d, dv, chunk, true), (b, _, sc) =>
        {
            CausalBlock(plan, q.Span, k.Span, v.Span, prefix[b], coef, b, offset, sc, output);
            return sc;
        }, _ => { });
    }

    /// <summary>Pass 2 of the causal method for rows of block b, streaming from the block's prefix s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CausalBlock<T>(PolynomialPlan plan, ReadOnlySpan<T> qs, ReadOnlySpan<T> ks, ReadOnlySpan<T> vs, double[] s, double[] coef,
        int b, int offset, Scratch sc, Output<T> output)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var f = plan.Factors;
        int n = plan.Stats.N, m = plan.Stats.M, d = plan.Stats.D, dv = plan.Stats.Dv, r = f.Rank, chunk = plan.Chunk;
        int lo = b * PolynomialPlan.Block, hi = Math.Min(n, lo + PolynomialPlan.Block);
        Span<double> vrow = stackalloc double[dv + 1], num = stackalloc double[dv + 1];
        vrow[dv] = 1;
        for (int c0 = lo; c0 < hi; c0 += chunk)
        {
            int len = Math.Min(chunk, hi - c0);
            // Row c0 + j adds key c0 + j + o when it exists (0 ≤ c0 + j + o < m).
            int k0 = c0 + offset;
            int keyFrom = Math.Clamp(-k0, 0, len), keyTo = (int)Math.Clamp((long)m - k0, 0, len);
            // Row-major monomials (no transposition): φ rows carry the coefficients, ψ rows are plain monomials.
            for (int j = 0; j < len; j++)
            {
                for (int i = 0; i < d; i++) sc.X[i] = f.QueryScale * double.CreateTruncating(qs[(c0 + j) * d + i]);
                var phi = sc.Rows.AsSpan(j * r, r);
                f.MonomialsRow(sc.X.AsSpan(0, d), phi);
                TensorPrimitives.Multiply(phi, coef, phi);
            }
            for (int j = keyFrom; j < keyTo; j++)
            {
                for (int i = 0; i < d; i++) sc.X[i] = f.KeyScale * double.CreateTruncating(ks[(k0 + j) * d + i]);
                f.MonomialsRow(sc.X.AsSpan(0, d), sc.RowsK.AsSpan(j * r, r));
            }
            for (int j = 0; j < len; j++)
            {
                int row = c0 + j;
                if (row + offset < 0)
                {
                    // Bottom-right alignment with n > m: this row sees no key (zeros, as the exact kernel gives).
                    for (int c = 0; c < dv; c++) output[row * dv + c] = T.Zero;
                    continue;
                }
                bool addKey = j >= keyFrom && j < keyTo;
                if (addKey)
                    for (int c = 0; c < dv; c++) vrow[c] = double.CreateTruncating(vs[(k0 + j) * dv + c]);
                // S += ψ(k_row)·[V_row, 1] (when key `row` exists), then num = φ(q_row)ᵀ·S, in one pass over S.
                Kernels.CausalStep(sc.Rows.AsSpan(j * r, r), sc.RowsK.AsSpan(j * r, r), addKey, vrow, s, r, num);
                double w = num[dv];
                for (int c = 0; c < dv; c++) output[row * dv + c] = T.CreateTruncating(num[c] / w);
            }
        }
    }
}
