using System.CommandLine;
using System.Globalization;

namespace FastAttention.Cli.Infrastructure;

/// <summary>Options shared by several commands, with their validation in one place.</summary>
internal static class CommonOptions
{
    public static Option<int> Threads() => new("--threads") { Description = "Threads to use (0 = all processors; more than the processors is clamped).", DefaultValueFactory = _ => 0 };

    /// <summary>Validates --threads: 0 (all) or positive; above the processor count it is clamped, with a note on
    /// stderr (more threads than processors only adds switching, and reports would claim threads that did not run).</summary>
    public static int ThreadCount(int requested, string option = "--threads")
    {
        if (requested < 0) throw new UsageException($"{option} must be 0 (all processors) or positive (got {requested}).");
        int processors = Environment.ProcessorCount;
        if (requested <= processors) return requested;
        CliContext.Current.Note($"{option} {requested} is more than the {processors} processor{(processors == 1 ? "" : "s")} here; using {processors}.");
        return processors;
    }

    public static Option<string?> Precision() => new("--precision") { Description = "Element type: f32 or f64." };

    public static bool IsFloat32(string? precision, bool defaultF32, string accepted = "f32 or f64") => precision switch
    {
        null => defaultF32,
        "f32" or "float32" => true,
        "f64" or "float64" => false,
        _ => throw new UsageException($"--precision must be {accepted} (got '{precision}')."),
    };

    public static void Positive(string option, double value)
    {
        if (!(value > 0) || !double.IsFinite(value)) throw new UsageException($"{option} must be a positive number (got {Format(value)}).");
    }

    public static void Finite(string option, double value)
    {
        if (!double.IsFinite(value)) throw new UsageException($"{option} must be a finite number (got {Format(value)}).");
    }

    public static string Format(double value) => value.ToString("G6", CultureInfo.InvariantCulture);

    /// <summary>Generated benchmark data of <paramref name="matrices"/> (rows × cols) float64 matrices must fit one
    /// array each and the machine's memory; said before anything is allocated.</summary>
    public static void Fits(string options, long rows, long cols, int matrices = 3)
    {
        long elements = rows * cols;
        if (elements > Array.MaxLength)
            throw new UsageException($"{options}: {rows} × {cols} = {elements} elements per matrix exceed one array ({Array.MaxLength}).");
        long bytes = elements * 8 * matrices;
        long available = FastAttention.IO.NpyFile.AvailableMemory();
        if (bytes > available)
            throw new UsageException($"{options}: the inputs alone need {FastAttention.IO.NpyFile.FormatBytes(bytes)}, more than this machine's {FastAttention.IO.NpyFile.FormatBytes(available)}.");
    }

    /// <summary>Refuses a result with a non-finite entry (an overflow nothing caught): never written with exit 0.</summary>
    public static void RequireFinite<T>(string what, ReadOnlySpan<T> values) where T : System.Numerics.IFloatingPointIeee754<T>
    {
        for (int i = 0; i < values.Length; i++)
            if (!T.IsFinite(values[i]))
                throw new AttentionRefusedException(what, RefusalReason.Overflow,
                    $"the result has a non-finite entry ({values[i]}) at flat index {i}: an intermediate overflowed float64; use a smaller --scale or smaller entries.");
    }

    public static void AtLeast(string option, int value, int min)
    {
        if (value < min) throw new UsageException($"{option} must be at least {min} (got {value}).");
    }
}
