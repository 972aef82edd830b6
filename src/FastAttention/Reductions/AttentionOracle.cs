using System.Globalization;

namespace FastAttention.Reductions;

/// <summary>The instance a reduction handed to its oracle: n′ queries, m′ keys, dimension d′, entry bound B′ and the
/// additive accuracy ε′ it needed (the smallest over all calls), i.e. the AttC(n′, d′, B′, ε′) of the papers.</summary>
public sealed record ReductionInstance(int N, int Keys, int D, double Bound, double Epsilon);

/// <summary>
/// An attention algorithm used as a black-box oracle by the hardness reductions. Every call is one
/// <see cref="AttentionAlgorithm.Compute{T}(AttentionProblem{T}, AttentionSettings?)"/> on a single-head float64 problem whose value matrix is one non-negative
/// column; the reduction then thresholds the output rows. The oracle counts calls and certifies each threshold:
/// <list type="bullet">
/// <item>approximate algorithms are asked for the additive ε′ the threshold needs and held to their certificate;</item>
/// <item>exact algorithms are exact only up to float64 rounding. With V′ ≥ 0 every sum they form has non-negative
/// terms, so their error is relative: |û − u| ≤ κ·u + α with κ from <see cref="RelativeRoundingBound"/> and
/// α = 2·m′·2⁻¹⁰²² (weights that underflow). A threshold that rounding could flip is refused with the float64 limit.</item>
/// </list>
/// </summary>
public sealed class AttentionOracle
{
    private const double U = Numerics.FloatingPoint.U;
    private int _n, _keys, _d;
    private double _bound, _epsilon = double.PositiveInfinity;

    /// <summary>Wraps <paramref name="algorithm"/> as an oracle.</summary>
    /// <param name="algorithm">Any attention algorithm; approximate ones are held to their certificates.</param>
    /// <param name="threads">Threads per call; 0 means all processors.</param>
    /// <exception cref="ArgumentNullException"><paramref name="algorithm"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is negative.</exception>
    public AttentionOracle(AttentionAlgorithm algorithm, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(algorithm);
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        Algorithm = algorithm; Threads = threads;
    }

    /// <summary>The oracle registered under <paramref name="name"/> in <see cref="AttentionAlgorithms"/>.</summary>
    public static AttentionOracle Create(string name, int threads = 1) => new(AttentionAlgorithms.Create(name), threads);

    /// <summary>The wrapped algorithm.</summary>
    public AttentionAlgorithm Algorithm { get; }
    /// <summary>The algorithm's registry name (e.g. "exact").</summary>
    public string Name => Algorithm.Name;
    /// <summary>Threads per call (0 = all processors).</summary>
    public int Threads { get; }

    /// <summary>Oracle calls made so far.</summary>
    public int Calls { get; private set; }

    /// <summary>The largest instance built so far and the smallest ε′ it needed (null before the first call).</summary>
    public ReductionInstance? Instance => Calls == 0 ? null : new(_n, _keys, _d, _bound, _epsilon);

    /// <summary>
    /// κ: the relative error of an exact float64 attention output on a problem with non-negative V (derived for the
    /// streaming kernel; the compensated reference is more accurate). Λ bounds |s·q·k| (and s·Σ|q_l||k_l|):
    /// a logit is off by at most δ = 1.01·(d′+2)·u·Λ (dot product, scale, rounding of the constructed entries), a
    /// weight exp(l − max) by 1.01·(2δ + 4uΛ + 2u) relatively (two logits, the subtraction, exp), rescalings and the
    /// m′-term sums add (5m′+2)·u; numerator and denominator each carry that, the division u; times 2 for safety.
    /// Returns +∞ when the weights' exponent error exceeds 0.01 (no certificate at all).
    /// </summary>
    public static double RelativeRoundingBound(int keys, int dim, double lambda)
    {
        double delta = 1.01 * ((double)dim + 2) * U * lambda;
        double expo = 2 * delta + 4 * U * lambda + 2 * U;
        if (!(expo <= 0.01)) return double.PositiveInfinity;
        double e = 1.01 * expo + (5.0 * keys + 2) * U;
        return 2 * (2 * e + U);
    }

    /// <summary>The additive underflow term α = 2·m′·2⁻¹⁰²² of an exact oracle (weights below the normal range).</summary>
    public static double UnderflowBound(int keys) => 2.0 * keys * 2.2250738585072014e-308;

    /// <summary>
    /// One oracle call: computes u = Att(Q′, K′, V′)·e₁ on the instance (scale s, V′ one non-negative column) and, for
    /// each of the first <c>yesLow.Length</c> query rows r, decides whether u_r lies in the "yes" range
    /// (u_r ≥ yesLow[r]) rather than the "no" range (u_r ≤ noHigh[r]); rows with NaN are not decided. Throws
    /// <see cref="AttentionRefusedException"/> (naming <paramref name="reduction"/> and, via
    /// <paramref name="limitHint"/>, the largest instances float64 can certify) when no threshold is certifiable.
    /// </summary>
    internal bool[] Decide(OracleInstance inst, ReadOnlySpan<double> yesLow, ReadOnlySpan<double> noHigh, string reduction, Func<string> limitHint,
        double analyticNeed = double.NaN)
    {
        int rows = yesLow.Length;
        double kappa = RelativeRoundingBound(inst.M, inst.D, inst.Lambda());
        double alpha = Algorithm.IsExact ? UnderflowBound(inst.M) : 0;
        var threshold = new double[rows];
        double needed = double.PositiveInfinity, margin = double.PositiveInfinity;
        for (int r = 0; r < rows; r++)
        {
            if (double.IsNaN(yesLow[r]) || double.IsNaN(noHigh[r])) { threshold[r] = double.NaN; continue; }
            needed = Math.Min(needed, yesLow[r] > noHigh[r] ? (yesLow[r] - noHigh[r]) / 2 : analyticNeed);
            double lo = yesLow[r] * (1 - kappa) - alpha, hi = noHigh[r] * (1 + kappa) + alpha;
            margin = Math.Min(margin, (lo - hi) / 2);
            threshold[r] = (lo + hi) / 2;
        }
        if (double.IsPositiveInfinity(needed)) return new bool[rows];
        if (!double.IsNaN(analyticNeed)) needed = Math.Min(needed, analyticNeed);
        if (!(margin > 0))
            throw new AttentionRefusedException(reduction, RefusalReason.Float64Reach, string.Create(CultureInfo.InvariantCulture,
                $"this instance needs ε = {needed:G3} which float64 cannot certify (exact attention is only exact up to rounding: relative {kappa:G2}, absolute {alpha:G2}); {limitHint()}."));
        var settings = new AttentionSettings { Epsilon = Algorithm.IsExact ? 0 : margin * (1 - 1e-9), Threads = Threads };
        var problem = new AttentionProblem<double>(inst.Q, inst.K, inst.V, inst.N, inst.M, inst.D, 1, 1, inst.Scale);
        AttentionResult<double> result;
        try
        {
            result = Algorithm.Compute(problem, settings);
        }
        catch (AttentionRefusedException e)
        {
            throw new AttentionRefusedException(reduction, e.Reason, string.Create(CultureInfo.InvariantCulture,
                $"the oracle '{Name}' cannot serve this reduction: its instance (n′={inst.N}, d′={inst.D}, B′={problem.EntryBound:G4}) needs ε′ = {settings.Epsilon:G3} — {e.Message}"));
        }
        Calls++;
        _n = Math.Max(_n, inst.N); _keys = Math.Max(_keys, inst.M); _d = Math.Max(_d, inst.D);
        _bound = Math.Max(_bound, problem.EntryBound); _epsilon = Math.Min(_epsilon, needed);
        var decision = new bool[rows];
        for (int r = 0; r < rows; r++) decision[r] = !double.IsNaN(threshold[r]) && result.Output[r] >= threshold[r];
        return decision;
    }
}

/// <summary>An oracle instance: Q′ (n′×d′), K′ (m′×d′), V′ one non-negative column of length m′, logit scale s.</summary>
internal sealed record OracleInstance(double[] Q, double[] K, double[] V, int N, int M, int D, double Scale)
{
    /// <summary>Λ ≥ s·Σ_l |q_il|·|k_jl| for all i, j: the scale times the largest row 1-norm of Q′ times ‖K′‖∞.</summary>
    public double Lambda()
    {
        double q1 = 0, kmax = 0;
        for (int i = 0; i < N; i++)
        {
            double s = 0;
            for (int l = 0; l < D; l++) s += Math.Abs(Q[i * D + l]);
            q1 = Math.Max(q1, s);
        }
        foreach (double x in K) kmax = Math.Max(kmax, Math.Abs(x));
        return Math.Abs(Scale) * q1 * kmax * (1 + 4 * D * 1.2e-16);
    }
}
