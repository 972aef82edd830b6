namespace FastAttention;

/// <summary>
/// The registry of algorithms by name, so that tools can offer every algorithm without knowing each.
/// Each algorithm family adds itself here with one line.
/// </summary>
public static class AttentionAlgorithms
{
    private static readonly Dictionary<string, Func<AttentionAlgorithm>> Factories = new(StringComparer.OrdinalIgnoreCase)
    {
        ["exact"] = () => new Exact.FlashAttention(),
        ["reference"] = () => new Exact.ReferenceAttention(),
        ["polynomial"] = () => new Polynomial.PolynomialAttention(),
        ["vector"] = () => new RangeSearch.VectorAttention(),
        ["rounding"] = () => new RangeSearch.RoundingAttention(),
        ["range"] = () => new RangeSearch.RangeSearchAttention(),
        ["lowrank"] = () => new RangeSearch.LowRankAttention(),
        ["auto"] = () => new Planning.AutoAttention(),
    };

    /// <summary>Names of all registered algorithms.</summary>
    public static IReadOnlyCollection<string> Names => Factories.Keys;

    /// <summary>Creates the algorithm with this name, or throws naming the known ones.</summary>
    public static AttentionAlgorithm Create(string name)
    {
        if (Factories.TryGetValue(name, out var f)) return f();
        throw new ArgumentException($"unknown algorithm '{name}'; known: {string.Join(", ", Factories.Keys)}.", nameof(name));
    }
}
