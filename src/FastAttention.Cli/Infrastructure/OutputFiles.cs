using System.Collections.Concurrent;
using System.Text;
using FastAttention.IO;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// Every file a command writes, declared before any computing and checked then: not a folder, in a folder that exists
/// (or that the command creates), distinct from each other and from every input. Each output gets an empty temporary
/// file in its folder at once (so a folder one cannot write to fails before the work); the content goes there and
/// all outputs are renamed into place together by <see cref="Commit"/>, after a last check for Ctrl-C. Anything not
/// committed is deleted on dispose: an interrupted or failed run leaves neither partial nor temporary files.
/// </summary>
internal sealed class OutputFiles : IDisposable
{
    /// <summary>Temporary files of all live instances, for a second Ctrl-C that ends the process at once.</summary>
    private static readonly ConcurrentDictionary<string, byte> Pending = new();

    private readonly List<(string Option, string Full)> _inputs = [];
    private readonly List<(string Option, string Full, string Temp)> _outputs = [];
    private readonly List<string> _createdFolders = [];
    private readonly HashSet<string> _written = [];
    private bool _committed;

    private static StringComparison PathComparison => OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

    /// <summary>Deletes the temporary files of every live instance (the process is about to end).</summary>
    public static void DeletePending()
    {
        foreach (var tmp in Pending.Keys) TryDelete(tmp);
    }

    /// <summary>
    /// Writes one file outside a declared set (an experiment's figures and tables, written as each is ready) so that it
    /// appears only when complete: a temporary file in the same folder, registered for Ctrl-C cleanup, then renamed.
    /// </summary>
    public static void WriteOne(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new UsageException($"the output folder '{dir}' does not exist.");
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Pending.TryAdd(tmp, 0);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write)) { write(fs); fs.Flush(true); }
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            TryDelete(tmp);
            Pending.TryRemove(tmp, out _);
        }
    }

    /// <summary>Declares an input file: outputs may not overwrite it.</summary>
    public void Input(string option, string path)
    {
        if (TryFull(path) is { } full) _inputs.Add((option, Canonical(full)));
    }

    /// <summary>Declares an output file and checks it; returns its full path (use it with the Write methods).</summary>
    public string Output(string option, string path)
    {
        string full = FullPath(option, path);
        if (Directory.Exists(full)) throw new UsageException($"{option}: '{path}' is a folder; give a file name inside it.");
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir))
            throw new UsageException(File.Exists(dir) ? $"{option}: '{dir}' is a file, not a folder." : $"{option}: the folder '{dir}' does not exist.");
        return Declare(option, path, full);
    }

    /// <summary>Declares an output folder (created now if missing, removed again if the run fails) and the files the
    /// command writes in it; returns their full paths.</summary>
    public string[] Folder(string option, string dir, params string[] names)
    {
        string full = FullPath(option, dir);
        if (File.Exists(full)) throw new UsageException($"{option}: '{dir}' is a file, not a folder.");
        if (!Directory.Exists(full))
        {
            var missing = new List<string>();
            for (string? d = full; d is not null && !Directory.Exists(d); d = Path.GetDirectoryName(d))
            {
                if (File.Exists(d)) throw new UsageException($"{option}: '{d}' is a file, not a folder.");
                missing.Add(d);
            }
            try { Directory.CreateDirectory(full); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            { throw new UsageException($"{option}: cannot create the folder '{dir}' ({ExitCodes.OneLine(e.Message)})."); }
            _createdFolders.AddRange(missing); // deepest first
        }
        var paths = new string[names.Length];
        for (int i = 0; i < names.Length; i++)
        {
            string file = Path.Combine(full, names[i]);
            if (Directory.Exists(file)) throw new UsageException($"{option}: '{Path.Combine(dir, names[i])}' is a folder; it would be replaced by an output file.");
            paths[i] = Declare(option, Path.Combine(dir, names[i]), file);
        }
        return paths;
    }

    private string Declare(string option, string path, string full)
    {
        string canonical = Canonical(full);
        foreach (var (o, f) in _inputs)
            if (string.Equals(f, canonical, PathComparison))
                throw new UsageException($"{option}: '{path}' is also the {o} input; it would be overwritten — choose another file.");
        foreach (var (o, f, _) in _outputs)
            if (string.Equals(Canonical(f), canonical, PathComparison))
                throw new UsageException($"{option}: '{path}' is also the {o} output; choose a different file for each.");
        string tmp = NpyFile.TemporaryPath(full);
        try { using (new FileStream(tmp, FileMode.CreateNew, FileAccess.Write)) { } }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new UsageException($"{option}: cannot write in the folder of '{path}' ({ExitCodes.OneLine(e.Message)})."); }
        Pending[tmp] = 0;
        _outputs.Add((option, full, tmp));
        return full;
    }

    /// <summary>Writes an .npy output (to its temporary file).</summary>
    public void WriteNpy(string full, ReadOnlySpan<float> data, ReadOnlySpan<int> shape)
    {
        using var fs = OpenTemp(full);
        NpyFile.Write(fs, data, shape);
        fs.Flush(true);
    }

    /// <summary>Writes an .npy output (to its temporary file).</summary>
    public void WriteNpy(string full, ReadOnlySpan<double> data, ReadOnlySpan<int> shape)
    {
        using var fs = OpenTemp(full);
        NpyFile.Write(fs, data, shape);
        fs.Flush(true);
    }

    /// <summary>Writes an .npy output (to its temporary file).</summary>
    public void WriteNpy(string full, ReadOnlySpan<Half> data, ReadOnlySpan<int> shape)
    {
        using var fs = OpenTemp(full);
        NpyFile.Write(fs, data, shape);
        fs.Flush(true);
    }

    /// <summary>Writes a text output, UTF-8 (to its temporary file).</summary>
    public void WriteText(string full, string text) => WriteBytes(full, Encoding.UTF8.GetBytes(text));

    /// <summary>Writes a binary output (to its temporary file).</summary>
    public void WriteBytes(string full, ReadOnlySpan<byte> bytes)
    {
        using var fs = OpenTemp(full);
        fs.Write(bytes);
        fs.Flush(true);
    }

    private FileStream OpenTemp(string full)
    {
        foreach (var (_, f, tmp) in _outputs)
            if (f == full)
            {
                _written.Add(tmp);
                return new FileStream(tmp, FileMode.Truncate, FileAccess.Write, FileShare.None, 1 << 16);
            }
        throw new InvalidOperationException($"'{full}' was not declared as an output.");
    }

    /// <summary>Renames every output into place (after a last check for Ctrl-C). Outputs never written stay unwritten.</summary>
    public void Commit()
    {
        CliContext.Current.ThrowIfCancelled();
        foreach (var (_, full, tmp) in _outputs)
        {
            if (!_written.Contains(tmp)) continue;
            File.Move(tmp, full, overwrite: true);
            Pending.TryRemove(tmp, out _);
        }
        _committed = true;
    }

    public void Dispose()
    {
        foreach (var (_, _, tmp) in _outputs)
        {
            TryDelete(tmp);
            Pending.TryRemove(tmp, out _);
        }
        if (!_committed)
            foreach (var d in _createdFolders)
                try { if (Directory.Exists(d) && !Directory.EnumerateFileSystemEntries(d).Any()) Directory.Delete(d); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static string FullPath(string option, string path) =>
        TryFull(path) ?? throw new UsageException($"{option}: '{path}' is not a valid path.");

    private static string? TryFull(string path)
    {
        if (string.IsNullOrWhiteSpace(path)) return null;
        try { return Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { return null; }
    }

    /// <summary>The full path with a symbolic link (of the file or of its folder) resolved, for comparing paths.</summary>
    private static string Canonical(string full)
    {
        try
        {
            string dir = Path.GetDirectoryName(full) ?? full;
            string name = Path.GetFileName(full);
            if (Directory.Exists(dir) && new DirectoryInfo(dir).ResolveLinkTarget(true) is { } d) full = Path.Combine(d.FullName, name);
            if (File.Exists(full) && new FileInfo(full).ResolveLinkTarget(true) is { } f) full = f.FullName;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return full;
    }
}
