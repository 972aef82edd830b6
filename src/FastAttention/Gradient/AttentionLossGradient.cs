using System.Diagnostics;
using FastAttention.Numerics;

namespace FastAttention.Gradient;

/// <summary>What the reduction returns: dL/dX and an account of the oracle calls and the error budget.</summary>
public sealed record AttentionLossGradientResult
{
    /// <summary>The gradient g ≈ dL/dX, d×d row-major.</summary>
    public required ReadOnlyMemory<double> Gradient { get; init; }
    /// <summary>The oracle's registry name.</summary>
    public required string Oracle { get; init; }
    /// <summary>True when the oracle was exact: no ε was spent and <see cref="GuaranteedBound"/> is 0 (float64 rounding aside).</summary>
    public required bool OracleIsExact { get; init; }
    /// <summary>Attention(A₁X, A₂, ·) evaluations made (d + 2).</summary>
    public required int OracleCalls { get; init; }
    /// <summary>The requested ε: ‖g − dL/dX‖∞ ≤ ε is guaranteed (up to float64 rounding).</summary>
    public required double Epsilon { get; init; }
    /// <summary>ε asked of the call C₅ = f(x)·h(y).</summary>
    public required double EpsilonC5 { get; init; }
    /// <summary>ε asked of the call W = f(x)·A₂.</summary>
    public required double EpsilonW { get; init; }
    /// <summary>ε asked of each call C₇,p = f(x)·C₆,p.</summary>
    public required double EpsilonC7 { get; init; }
    /// <summary>The bound the requested per-call ε values imply (≤ <see cref="Epsilon"/>).</summary>
    public required double AprioriBound { get; init; }
    /// <summary>The bound implied by the oracle's certificates and the computed values, row by row (≤ the a priori bound
    /// and ≤ <see cref="Epsilon"/>; for exact oracles, their certified rounding bound propagated).</summary>
    public required double GuaranteedBound { get; init; }
    /// <summary>The appendix's per-call budget ε₂ = ε/(n·d·B³) with the measured B, for comparison.</summary>
    public required double PaperEpsilon2 { get; init; }
    /// <summary>Measured entry bound B over all inputs.</summary>
    public required double EntryBound { get; init; }
    /// <summary>Wall-clock time of the whole gradient (oracle calls included).</summary>
    public required TimeSpan Elapsed { get; init; }
    /// <summary>Time spent inside the oracle.</summary>
    public required TimeSpan OracleElapsed { get; init; }
}

/// <summary>
/// Gupta et al. Thm B.1: dL/dX of Def. B.1 from O(d) calls to an attention oracle Attention(A₁X, A₂, ·) plus
/// O(n·d²) work. Any <see cref="AttentionAlgorithm"/> serves as the oracle; approximate ones are asked for per-call
/// ε values chosen so that the returned gradient is within the requested ε.
/// </summary>
/// <remarks>
/// <para>What is computed (n×d matrices unless noted; f = f(x) = D⁻¹A is row-stochastic, h = h(y) = A₃Y):</para>
/// <list type="bullet">
/// <item>C₅ = f·h (1 call); c = C₅ − E (Def. B.5).</item>
/// <item>C₆,p = h_{*,p} ⊗_r A₂ for p = 1..d (m×d each); C₇,p = f·C₆,p (d calls).</item>
/// <item>B₁ − B₂ = Σ_p C₇,p ⊗_r c_{*,p} = Σ_p (C₈,p − C₁₁,p). The appendix computes C₉,p = C₆,p and
/// C₁₀,p = f·C₉,p = C₇,p again (d more calls); they are identical, so we reuse C₇,p.</item>
/// <item>B₃ (the p₂ term): the appendix writes B₃ = f·diag[f·c·hᵀ]·A₂ (built from C₁…C₃), but the softmax
/// Jacobian of Alman–Song App. D gives p₂ = diag(δ)·f with δᵢ = ⟨cᵢ, (f·h)ᵢ⟩ = ⟨cᵢ, C₅ᵢ⟩, i.e.
/// B₃ = diag(δ)·(f·A₂): one call W = f·A₂ and O(nd) work. The appendix's formula disagrees with finite
/// differences (see the tests); the corrected one agrees.</item>
/// <item>dL/dX = s·A₁ᵀ(B₁ − B₂ − B₃).</item>
/// </list>
/// <para>Total: d + 2 oracle calls (the appendix: 2d + 3) and O((n + m)·d²) other work.</para>
/// <para>Error budget: with e_O, e_W, e₇ the per-call errors, H_p = max_ℓ|h_ℓp|, E_p = max_i|E_ip|, α = ‖A₂‖∞,
/// S_c = Σ_p(H_p + E_p), S_h = Σ_p H_p, Δ = Σ_p(H_p + E_p)H_p, K = |s|·max_a Σ_i |A₁_ia|:
/// |Δδ| ≤ (S_c + S_h)e_O + d·e_O², |ΔM| ≤ S_c·e₇ + α·S_h·e_O + d·e_O·e₇ + Δ·e_W + (α + e_W)|Δδ|, and
/// ‖Δ dL/dX‖∞ ≤ K·|ΔM|. This replaces the appendix's n·B·(…) = Θ(ndB³)·ε₂ by data-dependent sums (K ≤ |s|·n·B,
/// S_c ≤ d(dB² + B), …) and is never worse. The per-call budgets give a third of ε to each linear term and are
/// then scaled together so that the full bound (quadratic terms included) equals ε. After the calls, the same
/// analysis is redone row by row with the computed values and the oracle's certificates (<see cref="AttentionLossGradientResult.GuaranteedBound"/>),
/// typically an order of magnitude below ε. Floating-point rounding of the O(nd²) work is not included.</para>
/// </remarks>
public static class AttentionLossGradient
{
    /// <summary>Computes dL/dX with <paramref name="oracle"/> answering every Attention(A₁X, A₂, ·) call.</summary>
    /// <param name="problem">The instance of Def. B.1.</param>
    /// <param name="oracle">Any attention algorithm (exact or approximate).</param>
    /// <param name="epsilon">Target ‖g − dL/dX‖∞ (ignored, but must be positive, when the oracle is exact).</param>
    /// <param name="threads">Threads for the oracle (0 = all).</param>
    public static AttentionLossGradientResult Compute(AttentionLossProblem problem, AttentionAlgorithm oracle, double epsilon, int threads = 0) =>
        Compute(problem, oracle, epsilon, threads, paperLiteralB3: false);

    /// <summary>As the public overload; see <paramref name="paperLiteralB3"/>.</summary>
    /// <param name="problem">The instance of Def. B.1.</param>
    /// <param name="oracle">Any attention algorithm.</param>
    /// <param name="epsilon">Target ‖g − dL/dX‖∞.</param>
    /// <param name="threads">Threads for the oracle (0 = all).</param>
    /// <param name="paperLiteralB3">Use the appendix's B₃ = f·diag[C₁·hᵀ]·A₂ via C₁, C₂, C₃ (needs m = n) instead of the
    /// corrected diag(δ)·f·A₂. Kept only so the tests can show that the literal formula is not the gradient.</param>
    internal static AttentionLossGradientResult Compute(AttentionLossProblem problem, AttentionAlgorithm oracle, double epsilon, int threads, bool paperLiteralB3)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(oracle);
        if (!(epsilon > 0) || !double.IsFinite(epsilon))
            throw new ArgumentOutOfRangeException(nameof(epsilon), $"epsilon must be a positive finite number (got {epsilon}).");
        if (threads < 0)
            throw new ArgumentOutOfRangeException(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        var total = Stopwatch.StartNew();
        int n = problem.N, m = problem.M, d = problem.D;
        double s = problem.Scale;
        var q = problem.Queries();      // A₁X, O(nd²)
        var h = problem.Values();       // Gupta et al. Def. B.4: h(y) = A₃Y, O(md²)
        var a2 = problem.A2.Span;
        var e = problem.E.Span;

        var k = BudgetConstants.Measure(problem, h);
        var (eO, eW, e7) = k.Split(epsilon);
        double apriori = k.Bound(eO, eW, e7);

        var oracleTime = new Stopwatch();
        int calls = 0;
        double certO = 0, certW = 0, cert7 = 0;
        double[] Call(double[] values, double eps, ref double cert)
        {
            var p = new AttentionProblem<double>(q, problem.A2.Data, values, n, m, d, d, heads: 1, scale: s, causal: false);
            oracleTime.Start();
            var r = oracle.Compute(p, new AttentionSettings { Epsilon = eps, Threads = threads });
            oracleTime.Stop();
            calls++;
            cert = Math.Max(cert, r.Certificate.ErrorBound);
            return r.Output;
        }

        // Gupta et al. Thm B.1: C₅ = f(x)·h(y) = Attention(A₁X, A₂, h(y)).
        var c5 = Call(h, eO, ref certO);
        // Gupta et al. Def. B.5: c(x) = f(x)·h(y) − E.
        var c = new double[n * d];
        for (int t = 0; t < c.Length; t++) c[t] = c5[t] - e[t];
        // Corrected B₃ (Alman–Song p₂ = diag(δ)·f): W = f(x)·A₂ = Attention(A₁X, A₂, A₂).
        double[] w = paperLiteralB3 ? [] : Call(problem.A2.Data.ToArray(), eW, ref certW);

        // M = B₁ − B₂ − B₃ (n×d), accumulated without any n×n matrix.
        var mAcc = new double[n * d];
        var c7Abs = new double[n * d]; // Σ_p |C̃₇,p[i,j]|, for the a posteriori bound
        var c6 = new double[m * d];
        for (int p = 0; p < d; p++)
        {
            // Gupta et al. Thm B.1: C₆,p = h(y)_{*,p} ⊗_r A₂ (row ℓ of A₂ scaled by h[ℓ,p]); C₉,p is the same matrix.
            for (int l = 0; l < m; l++)
            {
                double hp = h[l * d + p];
                for (int j = 0; j < d; j++) c6[l * d + j] = hp * a2[l * d + j];
            }
            // Gupta et al. Thm B.1: C₇,p = f(x)·C₆,p = Attention(A₁X, A₂, C₆,p); C₁₀,p = f(x)·C₉,p is the same.
            var c7 = Call(c6, e7, ref cert7);
            // Gupta et al. Thm B.1: C₈,p − C₁₁,p = C₇,p ⊗_r C₅_{*,p} − C₁₀,p ⊗_r E_{*,p} = C₇,p ⊗_r c_{*,p}.
            for (int i = 0; i < n; i++)
            {
                double cip = c[i * d + p];
                var row = mAcc.AsSpan(i * d, d);
                var c7Row = c7.AsSpan(i * d, d);
                var absRow = c7Abs.AsSpan(i * d, d);
                for (int j = 0; j < d; j++) { row[j] += cip * c7Row[j]; absRow[j] += Math.Abs(c7Row[j]); }
            }
        }
        if (paperLiteralB3)
        {
            if (m != n) throw new ArgumentException("the appendix's literal B₃ needs m = n.", nameof(problem));
            // Gupta et al. Thm B.1 (as printed): C₁ = f(x)·c(x) = Attention(A₁X, A₂, c(x)).
            var c1 = Call(c, eW, ref certW);
            // Gupta et al. Thm B.1: C₂ = diag[C₁·h(y)ᵀ], C₃ = C₂·A₂.
            var c3 = new double[n * d];
            for (int i = 0; i < n; i++)
            {
                double c2 = CompensatedSum.Dot(c1.AsSpan(i * d, d), h.AsSpan(i * d, d));
                for (int j = 0; j < d; j++) c3[i * d + j] = c2 * a2[i * d + j];
            }
            // Gupta et al. Thm B.1: B₃ = f(x)·C₃ = Attention(A₁X, A₂, C₃).
            var b3 = Call(c3, eW, ref certW);
            for (int t = 0; t < mAcc.Length; t++) mAcc[t] -= b3[t];
        }
        // B₃ = diag(δ)·f(x)·A₂ with δᵢ = ⟨cᵢ, C₅ᵢ⟩ (Alman–Song App. D p₂; replaces the appendix's C₁…C₃).
        else for (int i = 0; i < n; i++)
        {
            double delta = CompensatedSum.Dot(c.AsSpan(i * d, d), c5.AsSpan(i * d, d));
            for (int j = 0; j < d; j++) mAcc[i * d + j] -= delta * w[i * d + j];
        }
        // dL/dX = s·A₁ᵀ·(B₁ − B₂ − B₃).
        var g = new double[d * d];
        var a1 = problem.A1.Span;
        var colA = new double[n];
        var colM = new double[n];
        for (int a = 0; a < d; a++)
        {
            for (int i = 0; i < n; i++) colA[i] = a1[i * d + a];
            for (int b = 0; b < d; b++)
            {
                for (int i = 0; i < n; i++) colM[i] = mAcc[i * d + b];
                g[a * d + b] = s * CompensatedSum.Dot(colA, colM);
            }
        }
        total.Stop();
        double paperEps2 = k.EntryBound > 0 ? epsilon / (n * (double)d * Math.Pow(k.EntryBound, 3)) : epsilon;
        return new AttentionLossGradientResult
        {
            Gradient = g,
            Oracle = oracle.Name,
            OracleIsExact = oracle.IsExact,
            OracleCalls = calls,
            Epsilon = epsilon,
            EpsilonC5 = eO,
            EpsilonW = eW,
            EpsilonC7 = e7,
            AprioriBound = apriori,
            GuaranteedBound = paperLiteralB3 ? double.NaN : Math.Min(k.Bound(certO, certW, cert7),
                PosteriorBound(problem, c, c5, w, c7Abs, certO, certW, cert7)),
            PaperEpsilon2 = paperEps2,
            EntryBound = k.EntryBound,
            Elapsed = total.Elapsed,
            OracleElapsed = oracleTime.Elapsed,
        };
    }

    /// <summary>
    /// The same error analysis as <see cref="BudgetConstants.Bound"/>, row by row with the computed values (true values
    /// bounded by computed ± certified error): |ΔMᵢⱼ| ≤ e₇Σ_p(|c̃ᵢₚ| + e_O) + e_O(Σ_p|C̃₇,p[i,j]| + d·e₇) + d·e_O·e₇
    /// + |δ|ᵢe_W + (|W̃ᵢⱼ| + 2e_W)|Δδ|ᵢ, |Δδ|ᵢ ≤ e_O·Σ_p(|c̃ᵢₚ| + |C̃₅ᵢₚ| + 2e_O) + d·e_O², then ‖ΔG‖∞ ≤ |s|·max_{a,b} Σᵢ|A₁ᵢₐ|·|ΔMᵢ_b|.
    /// </summary>
    private static double PosteriorBound(AttentionLossProblem p, double[] c, double[] c5, double[] w, double[] c7Abs, double eO, double eW, double e7)
    {
        if (eO == 0 && eW == 0 && e7 == 0) return 0;
        int n = p.N, d = p.D;
        var a1 = p.A1.Span;
        var colBound = new double[d * d]; // [a, b]: Σᵢ |A₁ᵢₐ|·|ΔMᵢ_b|
        var dm = new double[d];
        for (int i = 0; i < n; i++)
        {
            double sumC = 0, dDelta = 0, delta = 0;
            for (int q = 0; q < d; q++)
            {
                double ci = Math.Abs(c[i * d + q]) + eO, oi = Math.Abs(c5[i * d + q]) + eO;
                sumC += ci;
                dDelta += (ci + oi) * eO + eO * eO;
                delta += ci * oi;
            }
            for (int j = 0; j < d; j++)
                dm[j] = e7 * sumC + eO * (c7Abs[i * d + j] + d * e7) + d * eO * e7 + delta * eW + (Math.Abs(w[i * d + j]) + 2 * eW) * dDelta;
            for (int a = 0; a < d; a++)
            {
                double weight = Math.Abs(a1[i * d + a]);
                if (weight == 0) continue;
                for (int b = 0; b < d; b++) colBound[a * d + b] += weight * dm[b];
            }
        }
        double max = 0;
        foreach (double v in colBound) max = Math.Max(max, v);
        return Math.Abs(p.Scale) * max * (1 + 1e-12);
    }

    /// <summary>The data-dependent constants of the error bound (see the class remarks).</summary>
    internal readonly record struct BudgetConstants(int D, double K, double Alpha, double Sc, double Sh, double Delta, double EntryBound)
    {
        public static BudgetConstants Measure(AttentionLossProblem p, double[] h)
        {
            int n = p.N, m = p.M, d = p.D;
            var a1 = p.A1.Span; var e = p.E.Span;
            double k = 0;
            for (int a = 0; a < d; a++)
            {
                double col = 0;
                for (int i = 0; i < n; i++) col += Math.Abs(a1[i * d + a]);
                k = Math.Max(k, col);
            }
            k *= Math.Abs(p.Scale) * (1 + 1e-12); // the column sums rounded up
            double sc = 0, sh = 0, delta = 0;
            for (int c = 0; c < d; c++)
            {
                double hp = 0, ep = 0;
                for (int l = 0; l < m; l++) hp = Math.Max(hp, Math.Abs(h[l * d + c]));
                for (int i = 0; i < n; i++) ep = Math.Max(ep, Math.Abs(e[i * d + c]));
                sc += hp + ep; sh += hp; delta += (hp + ep) * hp;
            }
            return new BudgetConstants(d, k, AttentionLossProblem.MaxAbs(p.A2), sc, sh, delta, p.EntryBound);
        }

        /// <summary>‖Δ dL/dX‖∞ bound for per-call errors e_O (C₅), e_W (W), e₇ (each C₇,p).</summary>
        public double Bound(double eO, double eW, double e7)
        {
            if (K == 0) return 0; // A₁ = 0 or s = 0: dL/dX = s·A₁ᵀ(…) is exactly 0 whatever the oracle returns
            double dDelta = (Sc + Sh) * eO + D * eO * eO;
            double dM = Sc * e7 + Alpha * Sh * eO + D * eO * e7 + Delta * eW + (Alpha + eW) * dDelta;
            return K * dM;
        }

        /// <summary>Splits ε into three per-call budgets, a third of the linear part each, then scales all three by the
        /// largest t ∈ (0, 1] (bisection; the bound is increasing in t) for which the full bound, quadratic terms
        /// included, is ≤ ε.</summary>
        public (double EO, double EW, double E7) Split(double epsilon)
        {
            double tau = K > 0 ? epsilon / K : epsilon;
            double eO = Share(tau, Alpha * Sh + Alpha * (Sc + Sh));
            double eW = Share(tau, Delta);
            double e7 = Share(tau, Sc);
            double lo = 1;
            for (int i = 0; i < 4000 && !(Bound(lo * eO, lo * eW, lo * e7) <= epsilon); i++) lo *= 0.5;
            if (lo < 1)
            {
                double hi = 2 * lo;
                for (int i = 0; i < 60; i++)
                {
                    double mid = 0.5 * (lo + hi);
                    if (Bound(mid * eO, mid * eW, mid * e7) <= epsilon) lo = mid; else hi = mid;
                }
            }
            (eO, eW, e7) = (lo * eO, lo * eW, lo * e7);
            if (!(Bound(eO, eW, e7) <= epsilon) || !(eO > 0 && eW > 0 && e7 > 0))
                throw new ArgumentOutOfRangeException(nameof(epsilon), $"epsilon {epsilon:G4} cannot be split into positive per-call budgets for this input.");
            return (eO, eW, e7);
        }

        private static double Share(double tau, double coefficient) =>
            Math.Min(coefficient > 0 ? tau / (3 * coefficient) : tau, double.MaxValue / 4);
    }
}
