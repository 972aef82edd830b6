using FastAttention.IO;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// Bad user input, detected by the tool itself (an option's value, an input file's content, an output path): one line
/// naming the option, exit code 2. The only exception type, with <see cref="AttentionRefusedException"/> and
/// <see cref="NpyFormatException"/>, that the tool treats as the user's doing; everything else is an internal error.
/// </summary>
public sealed class UsageException(string message) : Exception(message);

internal static class ExitCodes
{
    public const int Success = 0;
    public const int Internal = 1;
    public const int Usage = 2;
    /// <summary>Stopped by Ctrl-C (128 + SIGINT, the shell's convention).</summary>
    public const int Cancelled = 130;

    /// <summary>The one-line message for an error that is the user's (bad input, or a refusal of their problem);
    /// null for anything else (a bug).</summary>
    public static string? UserMessage(Exception e) => e switch
    {
        UsageException or NpyFormatException or AttentionRefusedException => OneLine(e.Message),
        // Heads computed in parallel wrap their refusals; a refusal is still a refusal.
        AggregateException a when a.Flatten().InnerExceptions is { Count: > 0 } inner && inner.All(x => x is AttentionRefusedException)
            => OneLine(inner[0].Message),
        _ => null,
    };

    /// <summary>Message text on one line (no line breaks).</summary>
    public static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    /// <summary>The text of an ArgumentException without the " (Parameter 'x')" suffix .NET appends.</summary>
    public static string StripParameter(ArgumentException a)
    {
        string message = a.Message;
        int i = message.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
        return i >= 0 ? message[..i] : message;
    }

    /// <summary>Runs a library validation of user input, turning its ArgumentException into a UsageException that
    /// names the option. Only for calls that validate input: a library bug must never become exit 2.</summary>
    public static T Validate<T>(string option, Func<T> validate)
    {
        try { return validate(); }
        catch (ArgumentException a) { throw new UsageException($"{option}: {StripParameter(a)}"); }
    }

    /// <summary><see cref="Validate{T}(string, Func{T})"/> for a check without a result.</summary>
    public static void Validate(string option, Action validate) => Validate(option, () => { validate(); return 0; });
}
