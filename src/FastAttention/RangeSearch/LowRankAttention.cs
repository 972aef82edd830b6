using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Factorization;

namespace FastAttention.RangeSearch;

/// <summary>
/// Low-rank attention (Gupta et al. Theorem 1.2, Lemma A.5): when Q (or K) has numerical rank r ≤
/// <see cref="RangeSearchFamily.MaxRangeDimension"/>, Q·Kᵀ = Q′·K′ᵀ with Q′ = Q·W_r, K′ = K·W_r (W_r: the top r right
/// singular vectors of Q, from a thin QR of Q and the SVD of its d×d factor R — equivalently Q′ = U_Q·Σ_r as in the
/// paper), and ApproxAttention (Algorithm 1) runs in r dimensions. Whichever of Q and K has the smaller numerical rank
/// is used. The truncation is charged to the budget: with Eᵢ = qᵢ − qᵢW_rW_rᵀ computed explicitly, every logit moves by
/// at most Δ = s·maxᵢ‖Eᵢ‖·maxⱼ‖kⱼ‖ (+ the rounding of forming Q′, K′), so softmax probabilities change by a factor in
/// [e^{−2Δ}, e^{2Δ}] and the output by at most (e^{2Δ} − 1)‖V‖∞; the rest of ε goes to Algorithm 1
/// (<see cref="RangeEngine"/>, causal masks included: the projection does not mix positions).
/// </summary>
public sealed class LowRankAttention : RangeSearchFamily, ISupportsCausalAlignment
{
    /// <summary><c>"lowrank"</c>: Gupta et al. Theorem 1.2 (Q or K of low numerical rank), certified within ε.</summary>
    public override string Name => "lowrank";

    /// <inheritdoc/>
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
    {
        // A full-rank head is refused from a row sample first (O(d³) instead of O((n + m)·d²) and the family's checks).
        double vMax = Numerics.FloatingPoint.MaxAbs(head.V);
        if (vMax > 0 && RankLowerBoundFromSample(head, context.Epsilon, vMax) is var (lq, lk) && Math.Min(lq, lk) > MaxRangeDimension)
            ThrowHelper.Refused(Name, RefusalReason.RankBudget, $"the numerical rank of Q and K at this ε is at least {Math.Min(lq, lk)} (Q ≥ {lq}, K ≥ {lk}: singular values of a row sample, which never exceed the full matrix's), above the range-search limit r ≤ {MaxRangeDimension}; use 'exact'.", "exact");
        var plan = base.PlanHead(head, context);
        // The numerical rank decides before any work (thin QR + SVD of the d×d factor: O((n + m)·d²)).
        if (vMax > 0)
        {
            var (q, k, vd) = head.ToDouble();
            var (rq, rk) = NumericalRanks(q, head.N, k, head.M, head.D, head.Scale, context.Epsilon, vMax);
            if (Math.Min(rq, rk) > MaxRangeDimension)
                ThrowHelper.Refused(Name, RefusalReason.RankBudget, $"the numerical rank of Q and K at this ε is {Math.Min(rq, rk)} (Q: {rq}, K: {rk}), above the range-search limit r ≤ {MaxRangeDimension}; use 'exact'.", "exact");
            int r = Math.Max(1, Math.Min(rq, rk));
            // The search runs in r dimensions; projecting costs 2(n + m)·d·r flops.
            double projection = 2.0 * (head.N + head.M) * head.D * (r + head.D);
            var parameters = new RangeFamilyParameters { Rank = r, RankQ = rq, RankK = rk };
            if (context.MeasureCost)
            {
                // Measured: the reduction and Algorithm 1's preparation on all n reduced queries (geometry, the sampled
                // traversal, the plan chosen by counting), reused by execution — a plan chosen for a 64-query
                // sub-problem would be one whose moment build is never paid back.
                var red = Reduce(q, k, vd, head.N, head.M, head.D, head.Scale, context.Epsilon);
                var prepared = PrepareReduced(head, red, vd, context.Threads, context.Settings.EffectiveRates, RangeEngine.DefaultSample);
                if (prepared is not null)
                    return Planned(head, context, parameters, plan.Budget, (prepared.Cost + new CostEstimate(0, 0, 0, ScalarFlops: projection)) with { Sampled = true },
                        new Reduced(red, prepared));
            }
            var cost = EstimateCost(head, r);
            cost = cost with { ScalarFlops = cost.ScalarFlops + projection };
            return Planned(head, context, parameters, plan.Budget, cost);
        }
        return plan;
    }

    private protected override bool SamplesBySubproblem => false;

    /// <summary>A plan's state: the reduction and Algorithm 1 prepared on it.</summary>
    private sealed record Reduced(Reduction Reduction, RangeEngine.Prepared Prepared) : IDisposable
    {
        public void Dispose() => Prepared.Dispose();
    }

    private RangeEngine.Prepared? PrepareReduced<T>(AttentionHead<T> head, Reduction red, double[] v, int threads, MachineRates rates, int sample)
        where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T> =>
        RangeEngine.Prepare(Name, red.Q, red.K, v, head.N, head.M, red.Rank, head.Dv, red.Scale, red.Epsilon, typeof(T) != typeof(double), head.Causal,
            new RangeEngine.Options(threads, rates, sample, ForcedHalfWidth, AllowExactPlan, head.CausalOffset));

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        var (q, k, v) = head.ToDouble();
        if (RangeErrorBudget.MaxAbs(v) == 0)
        {
            output.Clear();
            return new HeadExecution([], new TrivialParameters("V = 0: output 0 exactly"));
        }
        Reduction red;
        RangeEngine.Prepared? prepared;
        if (plan.State is Reduced st) (red, prepared) = (st.Reduction, st.Prepared);
        else
        {
            red = Reduce(q, k, v, head.N, head.M, head.D, head.Scale, context.Epsilon);
            prepared = PrepareReduced(head, red, v, context.Threads, context.Settings.EffectiveRates, RangeEngine.DefaultSample);
        }
        if (prepared is null)
        {
            output.Clear();
            return new HeadExecution([], new TrivialParameters("V = 0: output 0 exactly"));
        }
        IReadOnlyList<ErrorTerm> terms; AlgorithmParameters parameters;
        try { (terms, parameters) = prepared.Execute(output, context.Threads, context.Cancellation); }
        finally { if (plan.State is not Reduced) prepared.Dispose(); } // prepared for this run only: its moments go back to the pool
        var p = (parameters as RangeFamilyParameters ?? new RangeFamilyParameters()) with
        {
            Rank = red.Rank, RankQ = red.RankQ, RankK = red.RankK, Projected = red.UseQ ? "Q" : "K",
            TruncationLogitShift = red.Delta, TruncationError = red.Truncation,
        };
        return new HeadExecution([new ErrorTerm("rank truncation (Theorem 1.2: (e^{2Δ} − 1)‖V‖∞)", red.Truncation), .. terms], p);
    }

    /// <summary>The work of the range search in r dimensions on the reduced Q′, K′ (the projection itself is O((n + m)·d·r)).</summary>
    internal override RangeWorkEstimate EstimateHead<T>(AttentionHead<T> head, double epsilon, int threads, int sampleQueries)
    {
        var (q, k, v) = head.ToDouble();
        if (RangeErrorBudget.MaxAbs(v) == 0) return RangeWorkEstimate.Zero(Name, head.N, head.M);
        var red = Reduce(q, k, v, head.N, head.M, head.D, head.Scale, epsilon);
        var p = RangeEngine.Prepare(Name, red.Q, red.K, v, head.N, head.M, red.Rank, head.Dv, red.Scale, red.Epsilon, typeof(T) != typeof(double), head.Causal,
            new RangeEngine.Options(threads, MachineRates.Default, sampleQueries, ForcedHalfWidth, AllowExactPlan, head.CausalOffset));
        return p?.Estimate() ?? RangeWorkEstimate.Zero(Name, head.N, head.M);
    }

    /// <summary>Lemma A.5's reduction of one head: Q′, K′ in r dimensions (entries scaled below 1, the scale absorbing it),
    /// the ranks, the truncation's logit shift Δ and output error, and the ε left for Algorithm 1.</summary>
    private sealed record Reduction(double[] Q, double[] K, int Rank, int RankQ, int RankK, bool UseQ, double Scale, double Delta, double Truncation, double Epsilon);

    private Reduction Reduce(double[] q, double[] k, double[] v, int n, int m, int d, double s, double eps)
    {
        double scale0 = s;
        double vMax = RangeErrorBudget.MaxAbs(v);
        double u = RangeErrorBudget.U;
        // Entries above 1 are scaled down by exact powers of two (s absorbs them: s·q·k is unchanged) so that the
        // projections and the search in r dimensions cannot overflow (entries of 1e154 with s = 1e-300 have logits
        // of only 1e8, but their products overflow).
        int eq = ScaleDown(q), ek = ScaleDown(k);
        s = Math.ScaleB(s, eq + ek);
        if (!double.IsFinite(s))
            ThrowHelper.Refused(Name, RefusalReason.Overflow, $"the logits s·qᵢ·kⱼ can reach about 2^{eq + ek + Math.ILogB(scale0)}, beyond float64's range; use 'exact'.", "exact");
        double qNorm = MaxRowNorm(q, n, d), kNorm = MaxRowNorm(k, m, d);
        // Truncation target: (e^{2Δ} − 1)‖V‖∞ ≤ ε/4.
        double deltaTarget = 0.5 * double.LogP1(0.25 * eps / vMax);
        var (wq, sq) = RightSingular(q, n, d, "Q");
        var (wk, sk) = RightSingular(k, m, d, "K");
        int rq = RankFor(sq, deltaTarget / (Math.Abs(s) * Math.Max(kNorm, double.Epsilon)));
        int rk = RankFor(sk, deltaTarget / (Math.Abs(s) * Math.Max(qNorm, double.Epsilon)));
        bool useQ = rq <= rk;
        int r = Math.Max(1, useQ ? rq : rk);
        if (r > MaxRangeDimension)
            ThrowHelper.Refused(Name, RefusalReason.RankBudget, $"the numerical rank of Q and K at this ε is {Math.Min(rq, rk)} (Q: {rq}, K: {rk}), above the range-search limit r ≤ {MaxRangeDimension}; use 'exact'.", "exact");
        var w = useQ ? wq : wk; // d×r, row-major
        var qr = Project(q, n, d, w, r, useQ, out double qResidual);
        var kr = Project(k, m, d, w, r, !useQ, out double kResidual);
        // Logits move by ≤ s·‖E‖·‖other‖ (truncation) + (2d + 2r + 8)u·s·‖q‖‖k‖ (forming the projections and E).
        // Scaled entries are below 1, so moving some by 2⁻¹⁰⁷⁵ (underflow) shifts a logit by at most 3d·|s|·2⁻¹⁰⁷⁵.
        double underflow = eq + ek > 0 ? 3.0 * d * Math.Abs(s) * Math.ScaleB(1, -1074) : 0;
        double delta = Math.Abs(s) * (useQ ? qResidual * kNorm : qNorm * kResidual) + (2.0 * d + 2 * r + 8) * u * Math.Abs(s) * qNorm * kNorm + underflow;
        double truncation = double.ExpM1(2 * delta) * vMax;
        if (!(truncation <= 0.5 * eps))
            ThrowHelper.Refused(Name, RefusalReason.RankBudget, $"truncating to rank {r} moves the output by up to {truncation:G3} > ε/2 = {0.5 * eps:G3}; use 'exact'.", "exact");
        return new Reduction(qr, kr, r, rq, rk, useQ, s, delta, truncation, eps - truncation);
    }

    /// <summary>Scales <paramref name="a"/> in place by 2^−e so that max|a| &lt; 1 when it was above 1; returns e ≥ 0.
    /// Exact except for entries pushed below 2⁻¹⁰²², which move by at most 2⁻¹⁰⁷⁵.</summary>
    private static int ScaleDown(double[] a)
    {
        double mx = RangeErrorBudget.MaxAbs(a);
        if (!(mx >= 1)) return 0;
        int e = Math.ILogB(mx) + 1;
        for (int i = 0; i < a.Length; i++) a[i] = Math.ScaleB(a[i], -e);
        return e;
    }

    private static double MaxRowNorm(double[] a, int rows, int d) => Numerics.FloatingPoint.MaxRowNorm<double>(a, rows, d);

    /// <summary>The numerical ranks of Q and K at ε (the ranks this algorithm would truncate to: σ_{r+1} below the
    /// tolerance that keeps the truncation's output error within ε/4).</summary>
    internal static (int RankQ, int RankK) NumericalRanks(double[] q, int n, double[] k, int m, int d, double scale, double epsilon, double vMax)
    {
        if (vMax == 0) return (0, 0);
        double qNorm = MaxRowNorm(q, n, d), kNorm = MaxRowNorm(k, m, d);
        double deltaTarget = 0.5 * double.LogP1(0.25 * epsilon / vMax);
        var (_, sq) = RightSingular(q, n, d);
        var (_, sk) = RightSingular(k, m, d);
        return (RankFor(sq, deltaTarget / (Math.Abs(scale) * Math.Max(kNorm, double.Epsilon))),
                RankFor(sk, deltaTarget / (Math.Abs(scale) * Math.Max(qNorm, double.Epsilon))));
    }

    /// <summary>
    /// Lower bounds on the numerical ranks of <see cref="NumericalRanks"/> from evenly spaced rows (2d, at least 64):
    /// the singular values of a row subset never exceed the full matrix's (Cauchy interlacing). They are read from the
    /// eigenvalues of the sample's Gram matrix AᵀA (d×d, O(d³)), trusted only above the Gram's rounding
    /// (Weyl: ≤ γ_rows·‖A‖_F²) and the eigensolver's backward error (64·d·u·λ₁), so a rank counted here is a true
    /// lower bound; squaring loses nothing a refusal needs (it only fires when σ_{r+1} is far above the tolerance).
    /// </summary>
    internal static (int RankQ, int RankK) RankLowerBoundFromSample<T>(AttentionHead<T> head, double epsilon, double vMax)
        where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        int n = head.N, m = head.M, d = head.D;
        int rows = Math.Max(64, 2 * d);
        if (n <= rows && m <= rows) return (0, 0); // the full computation is as cheap
        double qNorm = Numerics.FloatingPoint.MaxRowNorm(head.Q, n, d), kNorm = Numerics.FloatingPoint.MaxRowNorm(head.K, m, d);
        double deltaTarget = 0.5 * double.LogP1(0.25 * epsilon / vMax);
        double tolQ = deltaTarget / (Math.Abs(head.Scale) * Math.Max(kNorm, double.Epsilon));
        double tolK = deltaTarget / (Math.Abs(head.Scale) * Math.Max(qNorm, double.Epsilon));
        return (Lower(head.Q, n, tolQ), Lower(head.K, m, tolK));

        int Lower(ReadOnlySpan<T> x, int count, double tol)
        {
            int take = Math.Min(count, rows);
            var a = new double[take * d];
            for (int t = 0; t < take; t++)
            {
                long row = (long)t * count / take;
                for (int c = 0; c < d; c++) a[t * d + c] = double.CreateTruncating(x[(int)(row * d + c)]);
            }
            // A power-of-two scaling (max entry in [½, 1)) keeps every square in range; the eigenvalues scale by 4^e.
            double mx = RangeErrorBudget.MaxAbs(a);
            if (!(mx > 0) || !double.IsFinite(mx)) return 0;
            int e = Math.ILogB(mx) + 1;
            for (int i = 0; i < a.Length; i++) a[i] = Math.ScaleB(a[i], -e);
            var g = new double[d * d];
            double frob = 0;
            for (int t = 0; t < take; t++)
            {
                var r = a.AsSpan(t * d, d);
                for (int i = 0; i < d; i++)
                {
                    double ri = r[i];
                    frob += ri * ri;
                    for (int j = 0; j <= i; j++) g[i * d + j] = Math.FusedMultiplyAdd(ri, r[j], g[i * d + j]);
                }
            }
            for (int i = 0; i < d; i++) for (int j = 0; j < i; j++) g[j * d + i] = g[i * d + j];
            Vector<double> lambda;
            try { lambda = Matrix<double>.Build.DenseOfRowMajor(d, d, g).Evd(Symmetricity.Symmetric).EigenValues.Map(z => z.Real); }
            catch (MathNet.Numerics.NonConvergenceException) { return 0; } // no lower bound: the full computation decides
            double top = 0;
            for (int i = 0; i < d; i++) top = Math.Max(top, lambda[i]);
            double u = RangeErrorBudget.U;
            double slack = Numerics.FloatingPoint.Gamma(take + 2) * frob * (1 + Numerics.FloatingPoint.Gamma(take + 2)) + 64.0 * d * u * top;
            double tolScaled = Math.ScaleB(tol, -e);
            double threshold = tolScaled * tolScaled * (1 + 4 * u) + slack;
            int above = 0;
            for (int i = 0; i < d; i++) if (lambda[i] > threshold) above++;
            return above;
        }
    }

    /// <summary>Right singular vectors (d×d, columns, row-major) and singular values of the rows×d matrix A, via a thin
    /// QR (so the SVD is of the small d×d factor R, Lemma A.5) when rows ≥ d. A copy scaled by a power of two (max
    /// entry in [½, 1)) is factorised, so no square overflows or underflows; the singular values are scaled back. The
    /// basis only steers the rank (the certificate uses residuals computed from the data), so a failed factorisation
    /// is a refusal, never a wrong bound.</summary>
    private static (double[] W, double[] S) RightSingular(double[] a, int rows, int d, string name = "Q or K")
    {
        double mx = RangeErrorBudget.MaxAbs(a);
        int e = mx > 0 && double.IsFinite(mx) ? Math.ILogB(mx) + 1 : 0;
        var scaled = e == 0 ? a : Array.ConvertAll(a, x => Math.ScaleB(x, -e));
        var mat = Matrix<double>.Build.DenseOfRowMajor(rows, d, scaled);
        Svd<double> svd;
        try
        {
            var small = rows >= d ? mat.QR(QRMethod.Thin).R : mat;
            svd = small.Svd(true);
        }
        catch (MathNet.Numerics.NonConvergenceException)
        {
            ThrowHelper.Refused("lowrank", RefusalReason.NumericalFailure, $"the SVD of {name} did not converge; use 'exact'.", "exact");
            return default;
        }
        var vt = svd.VT;
        var w = new double[d * d];
        for (int i = 0; i < d; i++) for (int c = 0; c < d; c++) w[i * d + c] = vt[c, i];
        var s = new double[d];
        for (int i = 0; i < svd.S.Count && i < d; i++) s[i] = Math.ScaleB(svd.S[i], e);
        if (!w.All(double.IsFinite) || !s.All(double.IsFinite))
            ThrowHelper.Refused("lowrank", RefusalReason.NumericalFailure, $"the SVD of {name} produced non-finite values; use 'exact'.", "exact");
        return (w, s);
    }

    /// <summary>Smallest r with σ_{r+1} ≤ tol (σ sorted descending).</summary>
    private static int RankFor(double[] sigma, double tol)
    {
        for (int r = 0; r < sigma.Length; r++) if (sigma[r] <= tol) return r;
        return sigma.Length;
    }

    /// <summary>A·W_r (rows×r); when <paramref name="residual"/> is wanted, also maxᵢ‖aᵢ − aᵢW_rW_rᵀ‖ computed explicitly.</summary>
    private static double[] Project(double[] a, int rows, int d, double[] w, int r, bool wantResidual, out double residual)
    {
        var p = new double[rows * r];
        var back = new double[d];
        residual = 0;
        for (int i = 0; i < rows; i++)
        {
            for (int t = 0; t < r; t++)
            {
                double x = 0;
                for (int c = 0; c < d; c++) x += a[i * d + c] * w[c * d + t];
                p[i * r + t] = x;
            }
            if (!wantResidual) continue;
            double e2 = 0;
            for (int c = 0; c < d; c++)
            {
                double x = 0;
                for (int t = 0; t < r; t++) x += p[i * r + t] * w[c * d + t];
                double e = a[i * d + c] - x;
                e2 += e * e;
            }
            residual = Math.Max(residual, Math.Sqrt(e2));
        }
        residual *= 1 + 4 * d * RangeErrorBudget.U;
        return p;
    }
}
