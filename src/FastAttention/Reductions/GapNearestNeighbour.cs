using System.Globalization;
using System.Numerics;

namespace FastAttention.Reductions;

/// <summary>A (1 + ε)-approximate Hamming nearest-neighbour pair found through attention.</summary>
/// <param name="I">Index in A.</param>
/// <param name="J">Index in B.</param>
/// <param name="Distance">‖a_I − b_J‖₀, computed directly.</param>
/// <param name="LowerBound">A certified lower bound on min_{i,j} ‖a_i − b_j‖₀ (so Distance ≤ (1+ε)·LowerBound).</param>
/// <param name="GapCalls">Gap-ANN instances solved during the binary search over t.</param>
/// <param name="BruteForceCalls">Of those, how many took the brute-force branch for small t.</param>
/// <param name="OracleCalls">Oracle calls made (one per Gap-ANN instance that did not take the brute-force branch).</param>
/// <param name="Instance">The largest instance handed to the oracle and the smallest ε′ it needed (null when none).</param>
public sealed record NearestNeighbourResult(int I, int J, int Distance, int LowerBound, int GapCalls, int BruteForceCalls, int OracleCalls, ReductionInstance? Instance);

/// <summary>
/// Alman–Song Section 4: Gap-ANN through attention (Lemma 4.7) and the binary search over t that turns it into
/// (1 + ε)-ANN (after Definition 4.5). Remark 4.4 pads every vector to ã = [a, ā] (weight d, ⟨ã, b̃⟩ = d − h). The
/// 2n×2d-style instance (here n+m queries, 2m keys, d̃ = 4d) is Q = √β[ã_i, 1; 0, 1], K = √β[b̃_j, 0; 0, 1] (the τ
/// block), V = [1_m; 0_m], scale 1/d̃, so with x = β/(4d): logits x(d − h_ij) against b_j and 2xd = β/2 against τ.
/// Constants (derived, not the paper's Cb, Ca): distances are integers, so "h &gt; (1+ε)t" means h ≥ t₁ = ⌊(1+ε)t⌋ + 1;
/// x = ln(ρm)/(t₁ − t) with ρ = 4 makes the yes-value u ≥ F(e^{x(d−t)}) exceed the no-value u ≤ F(m·e^{x(d−t₁)}) by
/// the factor ρ (F(N) = N/(N + m·e^{2xd})); the threshold t̃₀ is their midpoint, computed in the log domain. Small t
/// (Hamming ball of radius t at most m^0.9 points, the paper's t &lt; c·log n) is answered by the brute-force ball
/// enumeration of Lemma 4.7 Case 1.
/// </summary>
public sealed class GapNearestNeighbour
{
    private readonly VectorSet _a, _b;
    private readonly AttentionOracle _oracle;
    private readonly HashSet<string> _lookup = new(StringComparer.Ordinal);

    /// <summary>The gap factor ρ between the yes and no values (the paper's exp(0.25βεt/d) &gt; 4n).</summary>
    public double Rho { get; init; } = 4;

    /// <summary>Brute force when the Hamming ball of radius t has at most m^exponent points (−∞: never).</summary>
    public double BruteForceExponent { get; init; } = 0.9;

    /// <summary>Gap-ANN instances answered by brute-force ball enumeration (Lemma 4.7 Case 1) so far.</summary>
    public int BruteForceCalls { get; private set; }
    /// <summary>Gap-ANN instances solved so far (each by the oracle or by brute force).</summary>
    public int GapCalls { get; private set; }

    /// <summary>A solver for the 0/1 sets <paramref name="a"/> and <paramref name="b"/> (same dimension ≥ 1) with
    /// <paramref name="oracle"/> answering the attention instances.</summary>
    /// <exception cref="ArgumentException">The dimensions differ or are 0, or an entry is not 0 or 1.</exception>
    public GapNearestNeighbour(VectorSet a, VectorSet b, AttentionOracle oracle)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(oracle);
        if (a.Dimension != b.Dimension) throw new ArgumentException($"A has dimension {a.Dimension} but B has {b.Dimension}.", nameof(b));
        if (a.Dimension < 1) throw new ArgumentException("the vectors need dimension at least 1.", nameof(a));
        a.RequireBinary();
        b.RequireBinary();
        _a = a; _b = b; _oracle = oracle;
    }

    /// <summary>
    /// Gap-ANN(t, ε) (Definition 4.5) for every a_i: true certifies min_j ‖a_i − b_j‖₀ ≤ ⌊(1+ε)t⌋, false certifies
    /// min_j ‖a_i − b_j‖₀ &gt; t.
    /// </summary>
    public bool[] Gap(int t, double epsilon)
    {
        if (!(epsilon > 0) || !double.IsFinite(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), $"ε must be positive (got {epsilon}).");
        if (t < 0) throw new ArgumentOutOfRangeException(nameof(t), $"t must be non-negative (got {t}).");
        GapCalls++;
        int n = _a.Count, m = _b.Count, d = _a.Dimension;
        if (t >= d) { var all = new bool[n]; Array.Fill(all, true); return all; }
        if (!double.IsNegativeInfinity(BruteForceExponent) && BallSize(d, t) <= Math.Pow(m, BruteForceExponent)) { BruteForceCalls++; return BruteForce(t); }
        // Lemma 4.7 Case 2: the padded 2n×2d-style instance with the τ block, thresholded at t̃₀ (midpoint of yes/no values).
        // ⌊εt⌋ beyond d changes nothing (every distance is ≤ d, so "≤ ⌊(1+ε)t⌋" is then trivially true): cap it.
        long t1 = t + Math.Min(FloorTimes(epsilon, t), d) + 1;
        double g = t1 - t;
        double x = Math.Log(Rho * m) / g;
        double beta = 4 * d * x, root = Math.Sqrt(beta);
        // log u = log N − log(N + m·e^{2xd}) with N the b-part of the denominator (Lemma 4.7 Case 2a/2b).
        double lnTau = Math.Log(m) + 2 * x * d;
        double lnYes = x * (d - t), lnNo = Math.Log(m) + x * (d - t1);
        double yes = Math.Exp(lnYes - LogAddExp(lnYes, lnTau)), no = Math.Exp(lnNo - LogAddExp(lnNo, lnTau));
        var inst = Instance(root, d);
        var yl = new double[n]; var nh = new double[n];
        Array.Fill(yl, yes); Array.Fill(nh, no);
        return _oracle.Decide(inst, yl, nh, "ann (Lemma 4.7)", () => Hint(m, d, epsilon));
    }

    /// <summary>(1 + ε)-ANN: a pair (i, j) with ‖a_i − b_j‖₀ ≤ (1+ε)·min ‖a − b‖₀, by binary search over t.</summary>
    public NearestNeighbourResult Solve(double epsilon)
    {
        // Definition 4.5 remark: log(d) Gap-ANN calls, binary search over t, turn Gap-ANN into (1 + ε)-ANN.
        int d = _a.Dimension, before = _oracle.Calls;
        int lo = -1, hi = d, row = 0; // invariant: min h > lo; some row certified ≤ ⌊(1+ε)hi⌋ (all rows at hi = d).
        while (hi - lo > 1)
        {
            int mid = (lo + hi) / 2;
            var rows = Gap(mid, epsilon);
            int r = Array.IndexOf(rows, true);
            if (r >= 0) { hi = mid; row = r; } else lo = mid;
        }
        int best = 0, bestH = int.MaxValue;
        for (int j = 0; j < _b.Count; j++)
        {
            int h = VectorSet.Hamming(_a[row], _b[j]);
            if (h < bestH) { bestH = h; best = j; }
        }
        return new NearestNeighbourResult(row, best, bestH, hi, GapCalls, BruteForceCalls, _oracle.Calls - before, _oracle.Instance);
    }

    private OracleInstance Instance(double root, int d)
    {
        // Remark 4.4 (ã = [a, ā]) inside Lemma 4.7's Q = √β[ã, 1; 0, 1], K = √β[b̃, 0; 0, 1], V = [1; 0], scale 1/d̃.
        int n = _a.Count, m = _b.Count, d1 = 2 * d, dt = 4 * d;
        var q = new double[(n + m) * dt];
        var k = new double[2 * m * dt];
        var v = new double[2 * m];
        for (int i = 0; i < n + m; i++)
        {
            for (int l = 0; l < d1; l++) q[i * dt + d1 + l] = root;
            if (i < n)
                for (int l = 0; l < d; l++)
                {
                    double bit = _a.Data[i * d + l];
                    q[i * dt + l] = root * bit;
                    q[i * dt + d + l] = root * (1 - bit);
                }
        }
        for (int j = 0; j < m; j++)
        {
            for (int l = 0; l < d; l++)
            {
                double bit = _b.Data[j * d + l];
                k[j * dt + l] = root * bit;
                k[j * dt + d + l] = root * (1 - bit);
            }
            for (int l = 0; l < d1; l++) k[(m + j) * dt + d1 + l] = root;
            v[j] = 1;
        }
        return new OracleInstance(q, k, v, n + m, 2 * m, dt, 1.0 / dt);
    }

    private bool[] BruteForce(int t)
    {
        int d = _a.Dimension;
        if (_lookup.Count == 0)
            for (int j = 0; j < _b.Count; j++) _lookup.Add(Key(_b[j]));
        var result = new bool[_a.Count];
        var buf = new char[d];
        for (int i = 0; i < _a.Count; i++)
        {
            for (int l = 0; l < d; l++) buf[l] = _a.Data[i * d + l] == 1 ? '1' : '0';
            result[i] = Ball(buf, 0, t);
        }
        return result;
    }

    // Lemma 4.7 Case 1: every b′ within distance t of a_i, looked up in the table of B.
    private bool Ball(char[] buf, int from, int radius)
    {
        if (_lookup.Contains(new string(buf))) return true;
        if (radius == 0) return false;
        for (int l = from; l < buf.Length; l++)
        {
            buf[l] = buf[l] == '1' ? '0' : '1';
            bool hit = Ball(buf, l + 1, radius - 1);
            buf[l] = buf[l] == '1' ? '0' : '1';
            if (hit) return true;
        }
        return false;
    }

    private static string Key(ReadOnlySpan<double> v)
    {
        var c = new char[v.Length];
        for (int l = 0; l < v.Length; l++) c[l] = v[l] == 1 ? '1' : '0';
        return new string(c);
    }

    private static double BallSize(int d, int t)
    {
        double s = 0, c = 1;
        for (int r = 0; r <= t; r++) { s += c; c = c * (d - r) / (r + 1); }
        return s;
    }

    /// <summary>⌊y·t⌋ exactly (y a double, t a small integer), via the binary expansion of y; capped at 2⁶² (callers
    /// cap it at d anyway).</summary>
    internal static long FloorTimes(double y, int t)
    {
        long bits = BitConverter.DoubleToInt64Bits(y);
        int exp = (int)((bits >> 52) & 0x7FF);
        long mant = bits & 0xFFFFFFFFFFFFFL;
        if (exp == 0) exp = 1; else mant |= 1L << 52;
        int e2 = exp - 1075; // y = mant · 2^e2
        BigInteger num = new BigInteger(mant) * t;
        var floor = e2 >= 0 ? num << e2 : num >> -e2; // arithmetic shift of a non-negative number = floor
        return floor > (BigInteger)(1L << 62) ? 1L << 62 : (long)floor;
    }

    private static double LogAddExp(double a, double b) => Math.Max(a, b) + Math.Log(1 + Math.Exp(-Math.Abs(a - b)));

    private static string Hint(int m, int d, double epsilon)
    {
        // The yes-value is about e^{−x(d+t)}/m with x = ln(ρm)/(⌊εt⌋+1); it must stay well inside float64 (≳ 1e−300).
        int dMax = d;
        while (dMax > 1 && WorstLogValue(m, dMax, epsilon) < -650) dMax--;
        return string.Create(CultureInfo.InvariantCulture,
            $"the values to separate fall to e^{WorstLogValue(m, d, epsilon):F0}; use d ≤ {dMax} at n = {m}, ε = {epsilon:G3}");
    }

    private static double WorstLogValue(int m, int d, double epsilon)
    {
        double worst = 0;
        for (int t = 0; t < d; t++)
        {
            double g = Math.Min(FloorTimes(epsilon, t), d) + 1;
            worst = Math.Min(worst, -Math.Log(4.0 * m) * (d + t) / g - Math.Log(m));
        }
        return worst;
    }
}
