namespace FastAttention.Reductions;

/// <summary>Which orthogonal-vectors reduction the SAT chain ends in.</summary>
public enum OrthogonalVectorsMethod
{
    /// <summary>Lemma C.6: one oracle call, any number of clauses.</summary>
    LargeD,
    /// <summary>Lemma C.8: B = ln 2, exact row sums; float64 limits it to few clauses.</summary>
    LogTwo,
}

/// <summary>The answer of the SAT chain.</summary>
/// <param name="Satisfiable">Whether a satisfying assignment was found.</param>
/// <param name="Assignment">The assignment (index v−1 holds x_v), re-checked against every clause.</param>
/// <param name="VectorsA">|A| = 2^⌈v/2⌉ partial assignments of the first half.</param>
/// <param name="VectorsB">|B| = 2^⌊v/2⌋ partial assignments of the second half.</param>
/// <param name="Ov">The orthogonal-vectors answer (oracle calls, instance).</param>
public sealed record SatResult(bool Satisfiable, bool[]? Assignment, int VectorsA, int VectorsB, OrthogonalVectorsResult Ov);

/// <summary>
/// CNF-SAT → orthogonal vectors by split-and-list (Williams 2004, the standard route to SETH hardness), beyond the
/// papers: the variables split into halves; each partial assignment α of a half becomes the vector whose clause-c
/// coordinate is 1 iff α satisfies no literal of clause c. a_α·b_β = 0 iff every clause is satisfied by α or β, so an
/// orthogonal pair is exactly a satisfying assignment, recovered from the witness and re-checked.
/// </summary>
public static class SatViaOrthogonalVectors
{
    /// <summary>Largest variable count (the OV instance has 2^⌈v/2⌉ × 2^⌊v/2⌋ pairs).</summary>
    public const int MaxVariables = 26;

    /// <summary>Decides <paramref name="formula"/> through one orthogonal-vectors instance solved with the oracle.</summary>
    /// <param name="formula">At most <see cref="MaxVariables"/> variables.</param>
    /// <param name="oracle">The attention oracle of the orthogonal-vectors step.</param>
    /// <param name="method">Lemma C.6 (large d, one call, deterministic) or Lemma C.8 (B = log 2, sampling: a "no" may be
    /// wrong with the reported failure probability).</param>
    /// <param name="seed">Seed of Lemma C.8's sampling.</param>
    /// <returns>Satisfiable or not, and a satisfying assignment recovered from the witness when there is one.</returns>
    /// <exception cref="ArgumentException">The formula has more than <see cref="MaxVariables"/> variables.</exception>
    public static SatResult Solve(CnfFormula formula, AttentionOracle oracle, OrthogonalVectorsMethod method = OrthogonalVectorsMethod.LargeD, int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(formula);
        ArgumentNullException.ThrowIfNull(oracle);
        if (formula.Variables > MaxVariables)
            throw new ArgumentException($"split-and-list builds 2^⌈v/2⌉ vectors per side; v ≤ {MaxVariables} is supported (got {formula.Variables}).", nameof(formula));
        // Williams 2004 split-and-list: CNF-SAT on v variables → OV on 2^⌈v/2⌉ × 2^⌊v/2⌋ vectors of dimension #clauses.
        var (a, b, v1) = SplitAndList(formula);
        var ov = method == OrthogonalVectorsMethod.LargeD
            ? OrthogonalVectorsLargeD.Solve(a, b, oracle)
            : OrthogonalVectorsLogTwo.Solve(a, b, oracle, seed);
        if (ov.Pair is not { } p) return new SatResult(false, null, a.Count, b.Count, ov);
        var assignment = new bool[formula.Variables];
        for (int v = 0; v < formula.Variables; v++)
            assignment[v] = v < v1 ? (p.I >> v & 1) == 1 : (p.J >> (v - v1) & 1) == 1;
        if (!formula.IsSatisfiedBy(assignment))
            throw new InvalidOperationException("the orthogonal pair does not give a satisfying assignment; this is a bug.");
        return new SatResult(true, assignment, a.Count, b.Count, ov);
    }

    /// <summary>Split-and-list: A over x_1..x_v1 (v1 = ⌈v/2⌉), B over the rest; partial assignment index bit k = x_{k+1}.</summary>
    internal static (VectorSet A, VectorSet B, int V1) SplitAndList(CnfFormula formula)
    {
        int v = formula.Variables, v1 = (v + 1) / 2, v2 = v - v1, c = formula.Clauses.Count;
        return (Side(formula, 0, v1, c, "A"), Side(formula, v1, v2, c, "B"), v1);
    }

    private static VectorSet Side(CnfFormula f, int offset, int count, int clauses, string name)
    {
        int size = 1 << count;
        var data = new double[size * clauses];
        for (int x = 0; x < size; x++)
            for (int c = 0; c < clauses; c++)
            {
                bool sat = false;
                foreach (int lit in f.Clauses[c])
                {
                    int var = Math.Abs(lit) - 1 - offset;
                    if (var < 0 || var >= count) continue;
                    if (((x >> var & 1) == 1) == lit > 0) { sat = true; break; }
                }
                data[x * clauses + c] = sat ? 0 : 1;
            }
        return new VectorSet(data, size, clauses, name);
    }
}
