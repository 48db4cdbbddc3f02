export function Flow() {
  return (
    <section>
      <h1>Flow</h1>
    </section>
  );
}
