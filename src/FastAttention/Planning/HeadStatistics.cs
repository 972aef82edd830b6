using System.Numerics;

namespace FastAttention.Planning;

/// <summary>
/// The measured statistics that decide which algorithm can serve a head: the entry bound B of each input, the largest
/// logit magnitude R (bounded by |s|·max‖qᵢ‖·max‖kⱼ‖), and the numerical ranks of Q and K at ε (what the low-rank
/// method of Gupta et al. Theorem 1.2 would truncate to).
/// </summary>
/// <param name="Head">The head index.</param>
/// <param name="N">Queries.</param>
/// <param name="M">Keys.</param>
/// <param name="D">Head dimension.</param>
/// <param name="EntryBound">B = max(‖Q‖∞, ‖K‖∞, ‖V‖∞) of this head.</param>
/// <param name="QMax">‖Q‖∞.</param>
/// <param name="KMax">‖K‖∞.</param>
/// <param name="VMax">‖V‖∞.</param>
/// <param name="LogitBound">R ≥ max |s·qᵢ·kⱼ| (Cauchy–Schwarz, rounded up).</param>
/// <param name="RankQ">Numerical rank of Q at ε (null without ε).</param>
/// <param name="RankK">Numerical rank of K at ε (null without ε).</param>
public sealed record HeadStatistics(int Head, int N, int M, int D, double EntryBound, double QMax, double KMax, double VMax, double LogitBound,
    int? RankQ, int? RankK)
{
    /// <summary>Measures head <paramref name="head"/> of <paramref name="problem"/>; the ranks need ε.</summary>
    public static HeadStatistics Measure<T>(AttentionProblem<T> problem, int head, double? epsilon)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        var h = problem.Head(head);
        double qMax = Numerics.FloatingPoint.MaxAbs(h.Q), kMax = Numerics.FloatingPoint.MaxAbs(h.K), vMax = Numerics.FloatingPoint.MaxAbs(h.V);
        double r = Math.Abs(h.Scale) * Numerics.FloatingPoint.MaxRowNorm(h.Q, h.N, h.D) * Numerics.FloatingPoint.MaxRowNorm(h.K, h.M, h.D);
        int? rq = null, rk = null;
        if (epsilon is double e && e > 0 && double.IsFinite(e) && vMax > 0 && double.IsFinite(r))
        {
            var (q, k, _) = h.ToDouble();
            (rq, rk) = RangeSearch.LowRankAttention.NumericalRanks(q, h.N, k, h.M, h.D, h.Scale, e, vMax);
        }
        return new HeadStatistics(head, h.N, h.M, h.D, Math.Max(qMax, Math.Max(kMax, vMax)), qMax, kMax, vMax, r, rq, rk);
    }
}
