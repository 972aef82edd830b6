using System.Reflection;

namespace FastAttention;

/// <summary>
/// The parameters an algorithm chose for one head, as a typed record per algorithm (e.g.
/// <c>PolynomialParameters</c> with its degree and rank). Read them by type:
/// <c>certificate.ParametersOf&lt;PolynomialParameters&gt;()</c>. <see cref="Describe"/> lists them for display and
/// reports, in declaration order.
/// </summary>
public abstract record AlgorithmParameters
{
    /// <summary>The record's public properties as (name, value) pairs in declaration order, camelCase names — for
    /// tables and JSON reports only; code reads the typed properties.</summary>
    public IReadOnlyList<KeyValuePair<string, object?>> Describe()
    {
        var list = new List<KeyValuePair<string, object?>>();
        foreach (var p in GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance).OrderBy(p => p.MetadataToken))
        {
            if (p.Name == "EqualityContract" || p.GetIndexParameters().Length > 0) continue;
            list.Add(new(char.ToLowerInvariant(p.Name[0]) + p.Name[1..], p.GetValue(this)));
        }
        return list;
    }
}

/// <summary>Parameters of the exact algorithms: the SIMD width and register blocking the kernel ran.</summary>
/// <param name="Kernel">The kernel ("flash" or "reference").</param>
/// <param name="Lanes">SIMD lanes of the element type used (1 = scalar).</param>
public sealed record ExactParameters(string Kernel, int Lanes) : AlgorithmParameters;

/// <summary>A parameter-free result: V = 0 gives the output 0 exactly whatever the algorithm.</summary>
/// <param name="Note">Why nothing was computed.</param>
public sealed record TrivialParameters(string Note) : AlgorithmParameters;

/// <summary>One named term of an error budget; a certificate's terms add up to its bound.</summary>
/// <param name="Name">What the term bounds (e.g. "approximation", "float64 rounding", "output rounding").</param>
/// <param name="Value">Its contribution to ‖T − Att‖∞ (absolute, entrywise).</param>
public sealed record ErrorTerm(string Name, double Value);

/// <summary>Sums of error terms.</summary>
public static class ErrorTerms
{
    /// <summary>Σ terms (the bound they certify).</summary>
    public static double Sum(IReadOnlyList<ErrorTerm> terms)
    {
        ArgumentNullException.ThrowIfNull(terms);
        double s = 0;
        foreach (var t in terms) s += t.Value;
        // Adding the terms in float64 may round down: inflate by the sum's own rounding so the total bounds them.
        return s * (1 + Numerics.FloatingPoint.Gamma(terms.Count));
    }

    /// <summary>Each term multiplied by <paramref name="factor"/> (e.g. undoing a power-of-two scaling of V).</summary>
    public static IReadOnlyList<ErrorTerm> Scale(IReadOnlyList<ErrorTerm> terms, double factor) =>
        [.. terms.Select(t => t with { Value = t.Value * factor })];
}
