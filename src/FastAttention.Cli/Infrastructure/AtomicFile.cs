namespace FastAttention.Cli.Infrastructure;

/// <summary>Writes a file so that it appears only when complete: temporary file in the same folder, then rename.</summary>
internal static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Write(path, s => { using var w = new StreamWriter(s, leaveOpen: true); w.Write(text); });

    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new UsageException($"the output folder '{dir}' does not exist.");
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write)) { write(fs); fs.Flush(true); }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }
}
