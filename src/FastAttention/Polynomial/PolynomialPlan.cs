using System.Numerics;
using FastAttention.Approximation;

namespace FastAttention.Polynomial;

/// <summary>What the parameter choice needs to know about one head: measured row norms and V's range.</summary>
internal readonly record struct HeadStats(
    int N, int M, int D, int Dv, double Scale, bool Causal, bool Float32,
    double QNorm, double KNorm, double VMax, double VHalfRange)
{
    /// <summary>Measures max‖qᵢ‖, max‖kⱼ‖ (float64, rounded up so they bound the exact norms), ‖V‖∞ and V's half-range. O((n + m)·d).</summary>
    public static HeadStats Measure<T>(AttentionHead<T> head) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double vMax = 0, half = 0;
        var v = head.V;
        for (int c = 0; c < head.Dv; c++)
        {
            double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
            for (int j = 0; j < head.M; j++)
            {
                double x = double.CreateTruncating(v[j * head.Dv + c]);
                if (x < lo) lo = x;
                if (x > hi) hi = x;
            }
            vMax = Math.Max(vMax, Math.Max(Math.Abs(lo), Math.Abs(hi)));
            half = Math.Max(half, 0.5 * (hi - lo) * (1 + 2 * ErrorBudget.Unit));
        }
        return new HeadStats(head.N, head.M, head.D, head.Dv, head.Scale, head.Causal, typeof(T) == typeof(float),
            Numerics.FloatingPoint.MaxRowNorm(head.Q, head.N, head.D), Numerics.FloatingPoint.MaxRowNorm(head.K, head.M, head.D), vMax, Math.Min(half, vMax));
    }
}

/// <summary>
/// The parameter choice of the polynomial method for one head (Alman–Song Theorem 3.7 made concrete): the interval
/// R from Cauchy–Schwarz, the split of ε into ε_A and rounding (Lemmas 3.5–3.6, <see cref="ErrorBudget"/>), the
/// degree g (verified Chebyshev interpolant, Cor. 2.2), the rank r = C(g + d, d) (Lemma 3.2), predicted cost, and
/// the refusals. Deterministic: the same head gives the same plan whatever the thread count.
/// </summary>
internal sealed class PolynomialPlan
{
    /// <summary>Rows (keys, or queries) per block: the unit of parallel work and of the summation tree.</summary>
    public const int Block = 4096;
    /// <summary>Smallest interval half-width used (an exact logit range of 0 still needs an interval).</summary>
    private const double MinR = 1e-6;
    /// <summary>Fractions of the budget left after output rounding that are offered to the approximation.</summary>
    private static readonly double[] Fractions = [0.9, 0.6, 0.3, 0.1, 0.03, 0.01];

    private PolynomialPlan(HeadStats stats, ExpPolynomial polynomial, LowRankFactors factors, ErrorBudget budget, double r, int chunk, double roundings)
    {
        Stats = stats; Polynomial = polynomial; Factors = factors; Budget = budget; R = r; Chunk = chunk; Roundings = roundings;
    }

    public HeadStats Stats { get; }
    public ExpPolynomial Polynomial { get; }
    public LowRankFactors Factors { get; }
    public ErrorBudget Budget { get; }
    /// <summary>|s·⟨qᵢ, kⱼ⟩| ≤ R for every pair (Cauchy–Schwarz with measured norms; Lemma 3.3 would give s·d·B²).</summary>
    public double R { get; }
    /// <summary>Rows per vectorised chunk.</summary>
    public int Chunk { get; }
    /// <summary>K: the most roundings any term meets in the evaluation.</summary>
    public double Roundings { get; }

    /// <summary>Chooses the parameters or throws <see cref="AttentionRefusedException"/> saying why and what to use instead.</summary>
    public static PolynomialPlan Create(HeadStats st, double epsilon, int maxRank)
    {
        // Lemma 3.3 tightened: |s⟨q,k⟩| ≤ |s|·max‖q‖·max‖k‖ (Cauchy–Schwarz), never worse than s·d·B².
        double qNorm = st.QNorm > 0 ? st.QNorm : 1, kNorm = st.KNorm > 0 ? st.KNorm : 1;
        double r = Math.Max(Math.Abs(st.Scale) * qNorm * kNorm * (1 + 4 * ErrorBudget.Unit), MinR);
        if (!double.IsFinite(r))
            ThrowHelper.Refused("polynomial", RefusalReason.EntryRange, $"the logit bound |s|·max‖q‖·max‖k‖ overflows float64 (s = {st.Scale:G3}, max‖q‖ = {qNorm:G3}, max‖k‖ = {kNorm:G3}); use 'exact'.", "exact");
        // t = x/R = ⟨σ_q q, σ_k k⟩ with ‖σ_q q‖ ≤ 1, ‖σ_k k‖ ≤ 1 (balanced).
        double sigmaK = 1 / kNorm, sigmaQ = st.Scale * kNorm / r;
        double outputUnit = st.Float32 ? Numerics.FloatingPoint.UFloat32 + 2 * Numerics.FloatingPoint.U : 2 * Numerics.FloatingPoint.U;
        double outputFloor = outputUnit * st.VMax * 1.01;
        if (!(outputFloor <= 0.5 * epsilon))
            ThrowHelper.Refused("polynomial", RefusalReason.OutputPrecision, st.Float32
                ? $"float32 output rounding alone (2⁻²⁴·‖V‖∞ = {outputFloor:G3}) exceeds half of ε = {epsilon:G3}; use float64 inputs or a larger ε."
                : $"float64 output rounding alone (2⁻⁵²·‖V‖∞ = {outputFloor:G3}) exceeds half of ε = {epsilon:G3}; ask for a larger ε.");
        string? lastReason = null;
        foreach (double fraction in Fractions)
        {
            double budget = fraction * (epsilon - outputFloor);
            double epsA = Math.Min(0.5, ErrorBudget.RelativeErrorFor(budget, st.VHalfRange));
            ExpPolynomial poly;
            try
            {
                // Cor. 2.2: relative error ε_P on [−R, R]; 90% of ε_A, the rest for conversion and scaling.
                poly = ExpPolynomial.Create(-r, r, 0.9 * epsA);
            }
            catch (AttentionRefusedException e)
            {
                RefuseFloat64(r, epsilon, lastReason ?? $"the exp polynomial itself is out of reach ({e.Message})");
                return null!;
            }
            double rank = LowRankFactors.NaturalRank(poly.Degree, st.D);
            if (rank > maxRank)
                ThrowHelper.Refused("polynomial", RefusalReason.RankBudget,
                    $"rank C(g + d, d) = C({poly.Degree} + {st.D}, {st.D}) = {rank:G4} (degree g = {poly.Degree} for |s·qᵢ·kⱼ| ≤ R = {r:G4}, ε = {epsilon:G3}) " +
                    $"exceeds the rank budget {maxRank}; the low-rank method pays only when r ≪ n — ask for a larger ε, raise the budget, or use the range-search algorithm ('range') or 'exact'.");
            double conversion = poly.MonomialConversionError();
            bool exactIntegers = double.IsFinite(conversion);
            if (!exactIntegers)
            {
                RefuseFloat64(r, epsilon, $"degree {poly.Degree} is too high for exact Chebyshev-to-monomial conversion");
                return null!;
            }
            var factors = new LowRankFactors(poly.MonomialCoefficients(), st.D, sigmaQ, sigmaK);
            if (factors.MaxMultinomial >= 9007199254740992.0)
            {
                RefuseFloat64(r, epsilon, "multinomial coefficients beyond 2⁵³");
                return null!;
            }
            int chunk = ChunkFor(factors.Rank);
            double k = RoundingCount(st, poly.Degree, factors.Rank, chunk);
            double expR = Math.Exp(r * (1 + 8 * ErrorBudget.Unit)) * (1 + 4 * ErrorBudget.Unit);
            var b = new ErrorBudget
            {
                Epsilon = epsilon,
                PolynomialError = poly.TargetRelativeError,
                ConversionError = conversion,
                ScaleError = 2 * r * ErrorBudget.Gamma(3),
                EvaluationRounding = ErrorBudget.Gamma(k) * factors.AbsoluteCoefficientSum * expR,
                VMax = st.VMax,
                VHalfRange = st.VHalfRange,
                OutputUnit = outputUnit,
            };
            if (b.Total <= epsilon) return new PolynomialPlan(st, poly, factors, b, r, chunk, k);
            lastReason = $"with g = {poly.Degree} the float64 rounding bound is {b.RoundingBound:G3} (monomial condition number {poly.MonomialConditionNumber:G3}, {k:G3} roundings) against ε = {epsilon:G3}";
            // A smaller share for the approximation raises the degree, which only adds rounding: stop when rounding alone fails.
            if (b.RoundingBound + b.OutputRoundingBound >= epsilon) break;
        }
        RefuseFloat64(r, epsilon, lastReason ?? "no split of ε works");
        return null!;
    }

    private static void RefuseFloat64(double r, double epsilon, string detail) =>
        ThrowHelper.Refused("polynomial", RefusalReason.Float64Reach,
            $"the interval |s·qᵢ·kⱼ| ≤ R = {r:G4} is beyond a certified float64 evaluation of the monomial expansion at ε = {epsilon:G3}: {detail}. " +
            "Use the range-search algorithm ('range'), which splits the interval, or ask for a larger ε.");

    /// <summary>Rows per chunk: the r×chunk monomial block stays within about 1 MiB.</summary>
    private static int ChunkFor(int rank)
    {
        int chunk = 256;
        while (chunk > 16 && (long)rank * chunk > 1 << 17) chunk /= 2;
        return chunk;
    }

    /// <summary>
    /// K of <see cref="ErrorBudget"/>: scaled inputs (1) and monomial products (≤ 2g − 1) on each side, coefficient
    /// (2), sums over keys (products 1, chunk ≤ c, chunks per block, blocks; causal: the prefix and the sequential
    /// updates), the sum over r features (≤ r + 1), the division (1), plus slack.
    /// </summary>
    private static double RoundingCount(HeadStats st, int degree, int rank, int chunk)
    {
        double blocks = Math.Ceiling((double)Math.Max(st.N, st.M) / Block);
        double keySums = 1 + chunk + Math.Ceiling((double)Block / chunk) + blocks;
        if (st.Causal) keySums += blocks + Block;
        return 2 * (2.0 * degree + 1) + 2 + keySums + rank + 1 + 1 + 8;
    }

    /// <summary>Predicted floating-point operations: monomials r per row and side, 2r(dv + 1) per key and per query.</summary>
    public double PredictedFlops
    {
        get
        {
            double r = Factors.Rank, dv1 = Stats.Dv + 1, keysTwice = Stats.Causal && Stats.N > Block ? 2 : 1;
            return (Stats.N + keysTwice * Stats.M) * r + 2 * r * dv1 * (keysTwice * Stats.M + Stats.N);
        }
    }

    /// <summary>Predicted extra memory in bytes per worker plus the per-block sums (never n×m, never n×r).</summary>
    public double PredictedBytes
    {
        get
        {
            double r = Factors.Rank, dv1 = Stats.Dv + 1;
            double perWorker = 8.0 * Chunk * (r * (Stats.Causal ? 2 : 1) + 2 * Stats.D + 2 * dv1);
            double blocks = Math.Ceiling((double)Math.Max(Stats.N, Stats.M) / Block);
            return perWorker * Math.Min(blocks, Environment.ProcessorCount) + 8.0 * r * dv1 * (blocks + 1);
        }
    }

    /// <summary>The typed parameters of this plan.</summary>
    public PolynomialParameters Parameters()
    {
        double exactFlops = 2.0 * Stats.N * Stats.M * (Stats.D + Stats.Dv) * (Stats.Causal ? 0.5 : 1);
        return new PolynomialParameters(
            Degree: Polynomial.Degree,
            Rank: Factors.Rank,
            RankPaperBound: Factors.PaperRankBound,
            R: R,
            EpsA: Budget.EpsA,
            // Lemma 2.1 / Cor. 2.2 with unit constants on [−R, R] (Aggarwal–Alman): max{2R, log(1/ε)/log(log(1/ε)/2R)}.
            TheoryDegree: ExpPolynomial.TheoryDegree(Polynomial.Length, Polynomial.TargetRelativeError),
            MonomialCondition: Polynomial.MonomialConditionNumber,
            ApproximationBound: Budget.ApproximationBound,
            RoundingBound: Budget.RoundingBound + Budget.OutputRoundingBound,
            PredictedFlops: PredictedFlops,
            PredictedBytes: PredictedBytes,
            FlopRatioVsExact: exactFlops / PredictedFlops);
    }

    /// <summary>Counted work: the monomial features and their products with [V, 1] (no exponentials).</summary>
    public CostEstimate Cost
    {
        get
        {
            double inputs = 8.0 * ((double)Stats.N * Stats.D + (double)Stats.M * (Stats.D + Stats.Dv) + (double)Stats.N * Stats.Dv);
            return new CostEstimate(0, 0, inputs + PredictedBytes, ScalarFlops: PredictedFlops);
        }
    }
}

/// <summary>Parameters of the polynomial method (Alman–Song Algorithm 1) for one head.</summary>
/// <param name="Degree">Degree g of the Chebyshev interpolant of exp on [−R, R] (Cor. 2.2).</param>
/// <param name="Rank">r = C(g + d, d): the rank of U₁U₂ᵀ (Lemma 3.2, monomials of degree ≤ g).</param>
/// <param name="RankPaperBound">The paper's rank bound C(2(g + d), 2g).</param>
/// <param name="R">The logit interval half-width: |s·qᵢ·kⱼ| ≤ R (Cauchy–Schwarz).</param>
/// <param name="EpsA">ε_A: the relative error of every entry of Ã against A.</param>
/// <param name="TheoryDegree">Lemma 2.1's degree with unit constants, for comparison.</param>
/// <param name="MonomialCondition">Σ|a_ℓ|·e^R: the monomial expansion's condition number.</param>
/// <param name="ApproximationBound">Lemmas 3.5–3.6 (sharpened): ε_A·H/(1 − ε_A).</param>
/// <param name="RoundingBound">float64 evaluation and output rounding.</param>
/// <param name="PredictedFlops">Counted flops.</param>
/// <param name="PredictedBytes">Extra memory in bytes (never n×m, never n×r).</param>
/// <param name="FlopRatioVsExact">Exact attention's flops over these.</param>
public sealed record PolynomialParameters(int Degree, int Rank, double RankPaperBound, double R, double EpsA, double TheoryDegree,
    double MonomialCondition, double ApproximationBound, double RoundingBound, double PredictedFlops, double PredictedBytes,
    double FlopRatioVsExact) : AlgorithmParameters;
