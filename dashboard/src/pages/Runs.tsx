export function Runs() {
  return (
    <section>
      <h1>Runs</h1>
    </section>
  );
}
